"""The chat server app: ``uvicorn servers.chat.server.app:app``."""

from gym_openenv.server import create_app
from servers.chat.server.environment import ChatEnvironment

app = create_app(ChatEnvironment)
