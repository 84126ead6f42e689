"""``AutoEnv`` / ``AutoAction``: find an environment by name, OpenEnv style.

Environments come from two places:

* ``registry.yaml`` (every ``gym_openenv/servers/<name>/`` of this repository);
* installed packages that declare an entry point in the group
  ``gym_openenv.environments``, named after the environment and pointing at
  its Environment class::

      [project.entry-points."gym_openenv.environments"]
      maze = "maze_env.server:MazeEnvironment"

Names are forgiving: ``coding``, ``coding-env``, ``coding_env`` and
``openenv/coding-v0`` are the same environment. A registry entry wins over an
entry point of the same name.

Example:
    >>> from gym_openenv.auto import AutoAction, AutoEnv
    >>> env = AutoEnv.from_env("echo-env")                  # doctest: +SKIP
    >>> env.reset(seed=0)                                   # doctest: +SKIP
    ('', {'message_length': 0})
    >>> AutoAction.from_env("echo")                         # doctest: +SKIP
    <class 'gym_openenv.servers.echo.models.EchoAction'>
"""

import difflib
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import gymnasium

from gym_openenv import registry
from gym_openenv.client import EnvClient
from gym_openenv.errors import UnknownEnvironment
from gym_openenv.manifest import Manifest, import_object, load_manifest

__all__ = [
    "ENTRY_POINT_GROUP",
    "AutoAction",
    "AutoEnv",
    "EnvironmentInfo",
    "discover",
    "find_environment",
    "normalize_name",
    "register_plugins",
]

#: The entry-point group installed packages declare their environments in.
ENTRY_POINT_GROUP = "gym_openenv.environments"


@dataclass(frozen=True)
class EnvironmentInfo:
    """One environment gym_openenv can make, and where it was declared."""

    name: str
    environment: str
    description: str
    source: str
    server: Path | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return registry.gym_id(self.name)

    def manifest(self) -> Manifest | None:
        """The server folder's ``openenv.yaml`` (None for entry-point environments)."""
        return None if self.server is None else load_manifest(self.server)

    def environment_class(self) -> type:
        return import_object(self.environment)

    def action_class(self) -> type:
        manifest = self.manifest()
        if manifest is not None:
            return import_object(manifest.models.action)
        return self.environment_class().action_type

    def client_class(self) -> type[EnvClient]:
        """The typed client: the manifest's ``client``, else one built from the models."""
        manifest = self.manifest()
        if manifest is not None:
            return import_object(manifest.client.import_path)
        env_cls = self.environment_class()
        return type(
            f"{env_cls.__name__}Client",
            (EnvClient,),
            {
                "action_type": env_cls.action_type,
                "observation_type": env_cls.observation_type,
                "state_type": env_cls.state_type,
                "environment": self.environment,
            },
        )

    def register(self) -> None:
        """Make ``gym.make(self.id)`` work (registry entries are registered on import)."""
        if self.id not in gymnasium.registry:
            gymnasium.register(
                id=self.id,
                entry_point=registry.ENTRY_POINT,
                vector_entry_point=registry.VECTOR_ENTRY_POINT,
                kwargs={"environment": self.environment, **self.kwargs},
            )


def normalize_name(name: str) -> str:
    """``"openenv/coding-v0"``, ``"coding-env"``, ``"coding_env"`` -> ``"coding"``."""
    return name.strip().removeprefix("openenv/").removesuffix("-v0").replace("-", "_").removesuffix("_env")


def _from_registry(entry: registry.RegistryEntry, registry_path: Path) -> EnvironmentInfo:
    return EnvironmentInfo(
        name=entry.name,
        environment=entry.environment,
        description=entry.description,
        source="registry",
        server=registry_path.parent / entry.server,
        kwargs=dict(entry.kwargs),
    )


def _from_entry_point(ep: EntryPoint) -> EnvironmentInfo:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    return EnvironmentInfo(
        name=normalize_name(ep.name),
        environment=ep.value,
        description=f"declared by the installed package {dist}",
        source=f"entry point ({dist})",
    )


def discover(registry_path: Path | None = None) -> dict[str, EnvironmentInfo]:
    """Every known environment by name: registry.yaml first, then entry points.

    Args:
        registry_path: another registry.yaml to read (default: the one ``import gym_openenv`` registers).
    """
    registry_path = Path(registry_path or registry.REGISTRY_PATH)
    found = {entry.name: _from_registry(entry, registry_path) for entry in registry.load_registry(registry_path)}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        info = _from_entry_point(ep)
        if ":" not in info.environment:
            warnings.warn(f"{info.source}: entry point {ep.name!r} must name 'module:Class', got {ep.value!r}; ignored", stacklevel=2)
        elif info.name in found:
            warnings.warn(f"{info.source}: {info.name!r} is already {found[info.name].source}'s; ignored", stacklevel=2)
        else:
            found[info.name] = info
    return found


def find_environment(name: str, registry_path: Path | None = None) -> EnvironmentInfo:
    """The environment called ``name`` (any spelling :func:`normalize_name` accepts).

    Raises:
        UnknownEnvironment: naming the closest known environments.
    """
    known = discover(registry_path)
    key = normalize_name(name)
    if key in known:
        return known[key]
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvironment(f"no environment named {name!r}.{hint} Known: {', '.join(sorted(known))}")


def register_plugins() -> None:
    """Register every entry-point environment with gymnasium (``import gym_openenv``
    registers registry.yaml's), so ``gym.make("openenv/<plugin>-v0")`` works too."""
    for info in discover().values():
        if info.source != "registry":
            info.register()


class AutoEnv:
    """Make any known environment from its name."""

    @staticmethod
    def list_environments() -> list[EnvironmentInfo]:
        """Every environment from registry.yaml and installed entry points, by name."""
        return sorted(discover().values(), key=lambda info: info.name)

    @staticmethod
    def from_env(name: str, *, client: bool = False, base_url: str | None = None, **kwargs: Any) -> Any:
        """A gymnasium environment (default) or a typed client for ``name``.

        Args:
            name: ``"coding"``, ``"coding-env"``, ``"coding_env"`` or ``"openenv/coding-v0"``.
            client: return the typed :class:`~gym_openenv.client.EnvClient` (async;
                ``.sync()`` blocks) instead of a ``gymnasium.Env``.
            base_url: connect to this running server instead of starting one.
            **kwargs: environment arguments (``game="pong"``); for the gymnasium
                environment also ``gym.make``'s (``max_episode_steps``, ``provider``).
        """
        info = find_environment(name)
        info.register()
        if client:
            client_cls = info.client_class()
            if base_url is not None:
                if kwargs:
                    raise ValueError("environment arguments go to the server that is started; with base_url= there is none")
                return client_cls(base_url)
            return client_cls.launch(**{**info.kwargs, **kwargs})
        if base_url is not None:
            kwargs["url"] = base_url
        return gymnasium.make(info.id, **kwargs)


class AutoAction:
    """The action class of any known environment."""

    @staticmethod
    def from_env(name: str) -> type:
        """The manifest's ``models.action`` class (an entry point's ``Environment.action_type``)."""
        return find_environment(name).action_class()
