"""gym_openenv: every OpenEnv environment as a Gymnasium environment.

Example:
    >>> import gymnasium as gym
    >>> import gym_openenv
    >>> env = gym.make("openenv/echo-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step("hello")
    >>> env.close()
    >>> env_id = gym_openenv.register_folder("path/to/maze_env")      # your folder # doctest: +SKIP
    >>> gym_openenv.AutoAction.from_env("echo")
    <class 'gym_openenv.servers.echo.models.EchoAction'>
"""

from typing import Any

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


def __getattr__(name: str) -> Any:
    # AutoEnv/AutoAction import the client; gymnasium imports this package for its plugin ids,
    # so they load on first use rather than with every `import gymnasium`.
    if name in ("AutoEnv", "AutoAction"):
        from gym_openenv import auto

        return getattr(auto, name)
    raise AttributeError(f"module 'gym_openenv' has no attribute {name!r}")


register_all()
