"""The chat server app: ``uvicorn gym_openenv.servers.chat.server.app:app``."""

from gym_openenv.server import create_app
from gym_openenv.servers.chat.server.environment import ChatEnvironment

app = create_app(ChatEnvironment)
