"""gym_openenv: every OpenEnv environment as a Gymnasium environment.

Example:
    >>> import gymnasium as gym
    >>> import gym_openenv
    >>> env = gym.make("openenv/echo-v0")                            # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step("hello")  # doctest: +SKIP
    >>> env_id = gym_openenv.register_folder("path/to/maze_env")      # doctest: +SKIP
    >>> gym_openenv.AutoAction.from_env("echo")
    <class 'gym_openenv.servers.echo.models.EchoAction'>
"""

from gym_openenv.auto import AutoAction, AutoEnv
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
from gym_openenv.registry import register_all, register_folder

__all__ = [
    "Action",
    "AutoAction",
    "AutoEnv",
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
    "register_folder",
]
__version__ = "0.1.0"

register_all()
