"""A typed client for the Gymnasium server, in OpenEnv's style.

Example:
    >>> from gym_openenv.servers.gym.client import GymEnv
    >>> from gym_openenv.servers.gym.models import GymAction
    >>> with GymEnv.launch(env_id="CartPole-v1").sync() as env:
    ...     env.reset(seed=0).observation.observation.shape
    ...     env.step(GymAction(action=1)).reward
    (4,)
    1.0
"""

from gym_openenv.client import EnvClient
from gym_openenv.servers.gym.models import GymAction, GymObservation, GymState

__all__ = ["GymEnv"]


class GymEnv(EnvClient[GymAction, GymObservation, GymState]):
    action_type = GymAction
    observation_type = GymObservation
    state_type = GymState
