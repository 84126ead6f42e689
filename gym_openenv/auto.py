"""``AutoEnv`` / ``AutoAction``: any environment from its name or its folder, OpenEnv style.

Names are looked up in gym_openenv's one table (:func:`gym_openenv.registry.find`:
registry.yaml, folders registered with :func:`gym_openenv.register_folder`, installed
packages' entry points) and are forgiving: ``coding``, ``coding-env``, ``coding_env`` and
``openenv/coding-v0`` are the same environment. A path to an OpenEnv environment folder
is registered on the way (``AutoEnv.from_env("./maze_env")``).

Example:
    >>> from gym_openenv import AutoAction, AutoEnv
    >>> env = AutoEnv.from_env("echo-env")
    >>> env.reset(seed=0)
    ('', {'message_length': 0})
    >>> env.close()
    >>> AutoAction.from_env("echo")
    <class 'gym_openenv.servers.echo.models.EchoAction'>
"""

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import gymnasium

from gym_openenv import registry
from gym_openenv.client import EnvClient
from gym_openenv.manifest import import_object
from gym_openenv.registry import RegistryEntry

__all__ = ["AutoAction", "AutoEnv", "action_class", "client_class", "resolve"]


def resolve(name_or_path: str | Path) -> RegistryEntry:
    """The entry for a name, or for an environment folder (registered on the way).

    Raises:
        UnknownEnvironment: no such name (with the closest ones).
    """
    if isinstance(name_or_path, Path) or Path(name_or_path).is_dir():
        return registry.find(registry.register_folder(name_or_path))
    return registry.find(str(name_or_path))


def action_class(entry: RegistryEntry) -> type:
    """The action model: the manifest's ``models.action``, the Environment's ``action_type``,
    or, for an OpenEnv folder's own app, the one ``Action`` subclass its ``models.py`` defines."""
    manifest = entry.manifest()
    if manifest is not None and manifest.models is not None:
        return import_object(manifest.models.action)
    if not entry.serves_folder_app:
        return import_object(entry.environment).action_type
    # Imported as the package the folder is (its parent importable), as OpenEnv's clients import it.
    if str(entry.server.parent) not in sys.path:
        sys.path.append(str(entry.server.parent))
    module = importlib.import_module(f"{entry.server.name}.models")
    found = [
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls) and cls.__module__ == module.__name__ and any(base.__name__ == "Action" for base in cls.__mro__[1:])
    ]
    if len(found) != 1:
        raise LookupError(f"{entry.server}/models.py defines {len(found)} Action subclasses; expected one: {[c.__name__ for c in found]}")
    return found[0]


def client_class(entry: RegistryEntry) -> type[EnvClient]:
    """The typed client: the manifest's ``client``, else one built from the Environment's models."""
    manifest = entry.manifest()
    if manifest is not None and manifest.client is not None:
        return import_object(manifest.client.import_path)
    if entry.serves_folder_app:
        raise LookupError(
            f"{entry.server} names no gym_openenv client; use gym.make({entry.id!r}) or the folder's own client.py"
        )
    env_cls = import_object(entry.environment)
    return type(
        f"{env_cls.__name__}Client",
        (EnvClient,),
        {
            "action_type": env_cls.action_type,
            "observation_type": env_cls.observation_type,
            "state_type": env_cls.state_type,
            "environment": entry.environment,
        },
    )


class AutoEnv:
    """Make any known environment from its name or folder."""

    @staticmethod
    def list_environments() -> list[RegistryEntry]:
        """Every environment gym_openenv knows, by name."""
        return sorted(registry.environments().values(), key=lambda entry: entry.name)

    @staticmethod
    def from_env(name: str | Path, *, client: bool = False, base_url: str | None = None, **kwargs: Any) -> Any:
        """A gymnasium environment (default) or a typed client for ``name``.

        Args:
            name: ``"coding"``, ``"coding-env"``, ``"openenv/coding-v0"``, or the path of an
                OpenEnv environment folder.
            client: return the typed :class:`~gym_openenv.client.EnvClient` (async;
                ``.sync()`` blocks) instead of a ``gymnasium.Env``.
            base_url: connect to this running server instead of starting one.
            **kwargs: environment arguments (``game="pong"``); for the gymnasium
                environment also ``gym.make``'s (``max_episode_steps``, ``provider``).
        """
        entry = resolve(name)
        entry.register()
        if client:
            client_cls = client_class(entry)
            if base_url is not None:
                if kwargs:
                    raise ValueError("environment arguments go to the server that is started; with base_url= there is none")
                return client_cls(base_url)
            return client_cls.launch(**{**entry.kwargs, **kwargs})
        if base_url is not None:
            kwargs["url"] = base_url
        return gymnasium.make(entry.id, **kwargs)


class AutoAction:
    """The action class of any known environment."""

    @staticmethod
    def from_env(name: str | Path) -> type:
        """The action model of ``name`` (a name or an environment folder), see :func:`action_class`."""
        return action_class(resolve(name))
