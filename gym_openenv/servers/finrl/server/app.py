"""The FinRL server app: ``uvicorn gym_openenv.servers.finrl.server.app:app``."""

from gym_openenv.server import create_app
from gym_openenv.servers.finrl.server.environment import FinRLEnvironment

app = create_app(FinRLEnvironment)
