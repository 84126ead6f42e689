"""The REPL server app: ``uvicorn servers.repl.server.app:app``."""

from gym_openenv.server import create_app
from servers.repl.server.environment import ReplEnvironment

app = create_app(ReplEnvironment)
