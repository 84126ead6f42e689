"""The Atari server app: ``uvicorn gym_openenv.servers.atari.server.app:app``.

The game and its settings come from ``OPENENV_ENV_KWARGS`` (JSON), e.g.
``OPENENV_ENV_KWARGS='{"game": "breakout"}'``; the default is Pong.
"""

from gym_openenv.server import create_app
from gym_openenv.servers.atari.server.environment import AtariEnvironment

app = create_app(AtariEnvironment)
