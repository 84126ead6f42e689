"""The Gymnasium server app: ``uvicorn gym_openenv.servers.gym.server.app:app``.

Which environment it serves comes from ``OPENENV_ENV_KWARGS`` (JSON), e.g.
``OPENENV_ENV_KWARGS='{"env_id": "Pendulum-v1"}'``; the default is CartPole-v1.
"""

from gym_openenv.server import create_app
from gym_openenv.servers.gym.server.environment import GymEnvironment

app = create_app(GymEnvironment)
