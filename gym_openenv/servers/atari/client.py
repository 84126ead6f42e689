"""A typed client for the Atari server, in OpenEnv's style.

Example:
    >>> from gym_openenv.servers.atari.client import AtariEnv
    >>> from gym_openenv.servers.atari.models import AtariAction
    >>> with AtariEnv.launch(game="breakout").sync() as env:
    ...     env.reset(seed=0).observation.lives
    ...     env.step(AtariAction(action_id=1)).reward
    5
    0.0
"""

from gym_openenv.client import EnvClient
from gym_openenv.servers.atari.models import AtariAction, AtariObservation, AtariState

__all__ = ["AtariEnv"]


class AtariEnv(EnvClient[AtariAction, AtariObservation, AtariState]):
    action_type = AtariAction
    observation_type = AtariObservation
    state_type = AtariState
