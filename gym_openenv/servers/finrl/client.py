"""A typed client for the FinRL server, in OpenEnv's style.

Example:
    >>> import numpy as np
    >>> from gym_openenv.servers.finrl.client import FinRLEnv
    >>> from gym_openenv.servers.finrl.models import FinRLAction
    >>> with FinRLEnv.launch(tickers=["AAPL", "MSFT"]).sync() as env:
    ...     first = env.reset(seed=0).observation
    ...     round(env.step(FinRLAction(actions=np.array([0.5, -0.5], np.float32))).observation.portfolio_value, 2)
    1000028.9
"""

from gym_openenv.client import EnvClient
from gym_openenv.servers.finrl.models import FinRLAction, FinRLObservation, FinRLState

__all__ = ["FinRLEnv"]


class FinRLEnv(EnvClient[FinRLAction, FinRLObservation, FinRLState]):
    action_type = FinRLAction
    observation_type = FinRLObservation
    state_type = FinRLState
