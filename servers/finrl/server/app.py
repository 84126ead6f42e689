"""The FinRL server app: ``uvicorn servers.finrl.server.app:app``."""

from gym_openenv.server import create_app
from servers.finrl.server.environment import FinRLEnvironment

app = create_app(FinRLEnvironment)
