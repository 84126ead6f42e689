"""Where environment servers run. ``local`` (a child process) is the default."""

from gym_openenv.providers.base import Provider
from gym_openenv.providers.local import LocalProcessProvider

__all__ = ["LocalProcessProvider", "Provider", "make_provider"]


def make_provider(kind: str, environment: str, env_kwargs: dict, **options) -> Provider:
    """The provider named ``kind`` for an environment class (``"module:Class"``)."""
    if kind == "local":
        return LocalProcessProvider(environment, env_kwargs, **options)
    raise ValueError(f"unknown provider {kind!r}; available: local")
