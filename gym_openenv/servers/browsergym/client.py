"""A typed client for the BrowserGym server, in OpenEnv's style.

Example:
    >>> from gym_openenv.servers.browsergym.client import BrowserGymEnv
    >>> from gym_openenv.servers.browsergym.models import BrowserGymAction
    >>> with BrowserGymEnv.launch(task="miniwob.click-test").sync() as env:
    ...     print(env.reset(seed=0).observation.text)
    ...     env.step(BrowserGymAction(action_str='click("2")')).reward
    [1] div "Click the button."
    [2] button "Click Me!" clickable
    1.0
"""

from gym_openenv.client import EnvClient
from gym_openenv.servers.browsergym.models import (
    BrowserGymAction,
    BrowserGymObservation,
    BrowserGymState,
)

__all__ = ["BrowserGymEnv"]


class BrowserGymEnv(EnvClient[BrowserGymAction, BrowserGymObservation, BrowserGymState]):
    action_type = BrowserGymAction
    observation_type = BrowserGymObservation
    state_type = BrowserGymState
