"""The coding server app: ``uvicorn gym_openenv.servers.coding.server.app:app``."""

from gym_openenv.server import create_app
from gym_openenv.servers.coding.server.environment import CodingEnvironment

app = create_app(CodingEnvironment)
