"""A typed client for the OpenSpiel server, in OpenEnv's style.

Example:
    >>> from gym_openenv.servers.openspiel.client import OpenSpielEnv
    >>> from gym_openenv.servers.openspiel.models import OpenSpielAction
    >>> with OpenSpielEnv.launch(game="tic_tac_toe").sync() as env:
    ...     result = env.reset(seed=0)
    ...     env.step(OpenSpielAction(action_id=4)).observation.text.splitlines()  # x in the centre, then the opponent's o
    ['...', '.x.', 'o..']
"""

from gym_openenv.client import EnvClient
from gym_openenv.servers.openspiel.models import (
    OpenSpielAction,
    OpenSpielObservation,
    OpenSpielState,
)

__all__ = ["OpenSpielEnv"]


class OpenSpielEnv(EnvClient[OpenSpielAction, OpenSpielObservation, OpenSpielState]):
    action_type = OpenSpielAction
    observation_type = OpenSpielObservation
    state_type = OpenSpielState
