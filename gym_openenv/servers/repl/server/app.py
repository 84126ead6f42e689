"""The REPL server app: ``uvicorn gym_openenv.servers.repl.server.app:app``."""

from gym_openenv.server import create_app
from gym_openenv.servers.repl.server.environment import ReplEnvironment

app = create_app(ReplEnvironment)
