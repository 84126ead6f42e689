"""Where environment servers run. ``local`` (a child process) is the default.

=========  ==========================================================  =====================
name       where the server runs                                       module
=========  ==========================================================  =====================
local      a child process on a loopback port                          :mod:`.local`
sandbox    a child process in bubblewrap, no network, Unix socket      :mod:`.sandbox`
docker     a container built from ``gym_openenv/servers/<name>/server/Dockerfile``  :mod:`.docker`
ray        a Ray actor anywhere in a Ray cluster                       :mod:`.ray`
remote     nowhere we control: a running server at ``url=``            :mod:`.remote`
=========  ==========================================================  =====================

Pick one per call (``gym.make(id, provider="docker")``), with
``$OPENENV_PROVIDER``, or by the registry entry's first ``providers`` hint.
"""

from typing import Any

from gym_openenv.manifest import import_object
from gym_openenv.providers.base import Provider
from gym_openenv.providers.local import LocalProcessProvider

__all__ = ["PROVIDERS", "LocalProcessProvider", "Provider", "make_provider"]

#: provider name -> "module:Class"; imported on first use (docker and ray are optional extras).
PROVIDERS = {
    "local": "gym_openenv.providers.local:LocalProcessProvider",
    "sandbox": "gym_openenv.providers.sandbox:SandboxProvider",
    "docker": "gym_openenv.providers.docker:DockerProvider",
    "ray": "gym_openenv.providers.ray:RayProvider",
    "remote": "gym_openenv.providers.remote:RemoteProvider",
}


def provider_class(kind: str) -> type[Provider]:
    """The provider class registered as ``kind``."""
    if kind not in PROVIDERS:
        raise ValueError(f"unknown provider {kind!r}; available: {', '.join(PROVIDERS)}")
    return import_object(PROVIDERS[kind])


def make_provider(kind: str, environment: str | None, env_kwargs: dict, **options: Any) -> Provider:
    """The provider named ``kind`` for an environment class (``"module:Class"``).

    ``options`` go to the provider's constructor (``provider_options`` of ``gym.make``).
    ``remote`` needs ``url=`` and ignores the environment and its arguments:
    the server at that URL was started with its own.
    """
    cls = provider_class(kind)
    if kind == "remote":
        if "url" not in options:
            raise ValueError("provider 'remote' needs url=... (the base URL of a running OpenEnv server)")
        return cls(options.pop("url"), **options)
    if environment is None:
        raise ValueError(f"provider {kind!r} needs an environment to start; openenv/remote-v0 takes url=...")
    return cls(environment, env_kwargs, **options)
