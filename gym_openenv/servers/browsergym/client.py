"""A typed client for the BrowserGym server, in OpenEnv's style.

Example:
    >>> from gym_openenv.servers.browsergym.client import BrowserGymEnv
    >>> from gym_openenv.servers.browsergym.models import BrowserGymAction
    >>> with BrowserGymEnv.launch(task="miniwob.click-test").sync() as env:   # doctest: +SKIP
    ...     first = env.reset(seed=0).observation
    ...     print(first.text)
    [1] div "Click the button."
    [2] button "Click Me!" clickable
    >>> env.step(BrowserGymAction(action_str='click("2")')).reward                # doctest: +SKIP
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
