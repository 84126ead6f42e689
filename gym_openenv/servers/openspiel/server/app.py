"""The OpenSpiel server app: ``uvicorn gym_openenv.servers.openspiel.server.app:app``.

Game and opponent come from ``OPENENV_ENV_KWARGS`` (JSON), e.g.
``{"game": "connect_four", "opponent": "mcts"}``.
"""

from gym_openenv.server import create_app
from gym_openenv.servers.openspiel.server.environment import OpenSpielEnvironment

app = create_app(OpenSpielEnvironment)
