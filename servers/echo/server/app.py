"""The echo server app: ``uvicorn servers.echo.server.app:app``."""

from gym_openenv.server import create_app
from servers.echo.server.environment import EchoEnvironment

app = create_app(EchoEnvironment)
