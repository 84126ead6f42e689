"""The echo server app: ``uvicorn gym_openenv.servers.echo.server.app:app``."""

from gym_openenv.server import create_app
from gym_openenv.servers.echo.server.environment import EchoEnvironment

app = create_app(EchoEnvironment)
