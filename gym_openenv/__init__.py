"""gym_openenv: every OpenEnv environment as a Gymnasium environment.

Example:
    >>> import gymnasium as gym
    >>> import gym_openenv
    >>> env = gym.make("openenv/echo-v0")                            # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step("hello")  # doctest: +SKIP
"""

from gym_openenv.errors import (
    CapacityReached,
    ConnectionLost,
    OpenEnvError,
    RequestTimeout,
    ServerError,
    ServerStartError,
    SessionError,
    UnknownEnvironment,
    Unauthorized,
)
from gym_openenv.models import Action, Observation, State
from gym_openenv.registry import register_all

__all__ = [
    "Action",
    "CapacityReached",
    "ConnectionLost",
    "Observation",
    "OpenEnvError",
    "RequestTimeout",
    "ServerError",
    "ServerStartError",
    "SessionError",
    "State",
    "UnknownEnvironment",
    "Unauthorized",
    "__version__",
]
__version__ = "0.1.0"

register_all()
