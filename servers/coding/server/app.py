"""The coding server app: ``uvicorn servers.coding.server.app:app``."""

from gym_openenv.server import create_app
from servers.coding.server.environment import CodingEnvironment

app = create_app(CodingEnvironment)
