"""Every environment gym_openenv can make: one table, one name lookup, gymnasium ids.

Entries come from three places and become ``openenv/<name>-v0`` alike:

* ``registry.yaml`` beside this module: gym_openenv's own servers (``gym_openenv/servers/<name>/``);
* folders registered while the program runs: :func:`gym_openenv.register_folder` (any OpenEnv
  environment folder, upstream's or ours);
* installed packages' entry points in the group ``gym_openenv.environments``, named after the
  environment: ``"module:Class"`` (a gym_openenv ``Environment``) or ``"package"`` (an OpenEnv
  environment folder installed as a package)::

      [project.entry-points."gym_openenv.environments"]
      maze = "maze_env"

Each id is made by :class:`gym_openenv.env.OpenEnvEnv` (``gym.make``) or
:class:`gym_openenv.vector.OpenEnvVectorEnv` (``gym.make_vec``).
``openenv/remote-v0`` drives any running OpenEnv server: ``gym.make("openenv/remote-v0", url=...)``.

What an environment *is* lives in two places only: its registry entry (how gymnasium
makes it: the Environment class, default kwargs, providers) and its folder's
``openenv.yaml`` (what the folder serves: name, app, port, version, description,
models). :meth:`RegistryEntry.description` and :meth:`RegistryEntry.serve_command`
derive from them, for clients, Dockerfiles and ``/metadata``.

Example:
    >>> find("echo-env").id
    'openenv/echo-v0'
    >>> find("echo").serve_command()[:3]
    ['gym-openenv', 'serve', 'echo']
"""

import difflib
import functools
import importlib.util
import re
import threading
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import gymnasium
import yaml

from gym_openenv.errors import UnknownEnvironment
from gym_openenv.manifest import MANIFEST_FILE, Manifest, folder_target, load_manifest, parse_manifest

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY_PATH",
    "RegistryEntry",
    "environments",
    "find",
    "find_folder",
    "folder_entry",
    "gym_id",
    "load_registry",
    "manifest_of",
    "normalize_name",
    "register",
    "register_all",
    "register_folder",
]

#: registry.yaml inside the package, beside ``servers/``.
REGISTRY_PATH = Path(__file__).resolve().parent / "registry.yaml"
#: The entry-point group installed packages declare their environments in.
ENTRY_POINT_GROUP = "gym_openenv.environments"
ENTRY_POINT = "gym_openenv.env:OpenEnvEnv"
VECTOR_ENTRY_POINT = "gym_openenv.vector:OpenEnvVectorEnv"
#: MCP tool environments (and remote-v0, which asks the server which it is): see gym_openenv.tools.
TOOL_ENTRY_POINT = "gym_openenv.tools:make_env"
TOOL_VECTOR_ENTRY_POINT = "gym_openenv.tools:make_vec_env"
KNOWN_PROVIDERS = ("local", "sandbox", "docker", "ray", "remote")
#: Where an environment folder's own app runs (it is served as built, by its own dependencies).
FOLDER_PROVIDERS = ("local", "docker", "remote")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def normalize_name(name: str) -> str:
    """``"openenv/coding-v0"``, ``"coding-env"``, ``"coding_env"``, ``"Coding"`` -> ``"coding"``.

    OpenEnv names folders and packages ``<name>_env``; gym ids drop the suffix.
    """
    return name.strip().lower().removeprefix("openenv/").removesuffix("-v0").replace("-", "_").removesuffix("_env")


def gym_id(name: str) -> str:
    return f"openenv/{name}-v0"


@dataclass(frozen=True)
class RegistryEntry:
    """One environment gymnasium can make, validated.

    Attributes:
        name: the gym name (``openenv/<name>-v0``).
        environment: what the server runs: an Environment class ``"module:Class"``, or an
            environment folder's own app, ``"server.app:app@/path/to/folder"``.
        server: the environment folder (None for an entry point naming a class).
        kwargs: default environment arguments (overridable in ``gym.make``).
        max_episode_steps: gymnasium TimeLimit (None: none).
        providers: where it may run; the first is the default.
        source: where it was declared: ``registry``, ``folder`` or ``entry point (<dist>)``.
        tools: an MCP tool environment: ``gym.make`` gives a :class:`gym_openenv.tools.ToolEnv`.
    """

    name: str
    environment: str
    server: Path | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    providers: tuple[str, ...] = ("local",)
    source: str = "registry"
    tools: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"{self.source}: name {self.name!r} must be lowercase letters, digits and underscores")
        if ":" not in self.environment:
            raise ValueError(f"{self.source}: {self.name}.environment must be 'module:Class', got {self.environment!r}")
        unknown = set(self.providers) - set(KNOWN_PROVIDERS)
        if unknown:
            raise ValueError(f"{self.source}: {self.name}.providers has unknown {sorted(unknown)}; known: {KNOWN_PROVIDERS}")

    @property
    def id(self) -> str:
        return gym_id(self.name)

    @property
    def serves_folder_app(self) -> bool:
        """Whether the server is the folder's own app (served as built) rather than an Environment class."""
        return "@" in self.environment

    def manifest(self) -> Manifest | None:
        """The folder's ``openenv.yaml`` (None without a folder or without the file)."""
        if self.server is None or not (self.server / MANIFEST_FILE).is_file():
            return None
        return load_manifest(self.server)

    @property
    def description(self) -> str:
        """One line: the folder's ``openenv.yaml`` ``description`` (the only place it is written)."""
        manifest = self.manifest()
        if manifest is not None and manifest.description:
            return manifest.description
        return f"{self.name} ({self.source})"

    def serve_command(self, host: str = "0.0.0.0", port: int | None = None) -> list[str]:
        """The command that serves this environment in a container: a Dockerfile's ``CMD``.

        ``gym-openenv serve`` reads the rest (class, kwargs, ``$OPENENV_ENV_KWARGS``) from the
        registry entry and ``openenv.yaml``, so the Dockerfile repeats neither.
        """
        manifest = self.manifest()
        port = port if port is not None else (manifest.port if manifest is not None else 8000)
        return ["gym-openenv", "serve", self.name, "--host", host, "--port", str(port)]

    def register(self) -> str:
        """Make ``gym.make(self.id)`` work; return the id."""
        if self.id not in gymnasium.registry:
            gymnasium.register(
                id=self.id,
                entry_point=TOOL_ENTRY_POINT if self.tools else ENTRY_POINT,
                vector_entry_point=TOOL_VECTOR_ENTRY_POINT if self.tools else VECTOR_ENTRY_POINT,
                max_episode_steps=self.max_episode_steps,
                kwargs={"environment": self.environment, **self.kwargs, **({"tools": True} if self.tools else {})},
            )
        return self.id


@functools.lru_cache(maxsize=None)
def load_registry(path: Path = REGISTRY_PATH) -> tuple[RegistryEntry, ...]:
    """Parse and validate registry.yaml (once per path); ``server`` folders resolve beside it."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    entries = []
    for raw in data.get("environments", []):
        raw = dict(raw)
        if "description" in raw:
            raise ValueError(f"{path}: {raw.get('name')}.description belongs in the server folder's {MANIFEST_FILE}")
        raw["providers"] = tuple(raw.get("providers") or ("local",))
        raw["kwargs"] = dict(raw.get("kwargs") or {})
        if raw.get("server") is not None:
            raw["server"] = (path.parent / raw["server"]).resolve()
        try:
            entries.append(RegistryEntry(**raw))
        except TypeError as e:
            raise ValueError(f"{path}: bad entry {raw.get('name', raw)!r}: {e}") from None
    names = [e.name for e in entries]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{path}: duplicate names {sorted(duplicates)}")
    return tuple(entries)


# Folders registered while the program runs (register_folder), by name.
_REGISTERED: dict[str, RegistryEntry] = {}
_LOCK = threading.Lock()


def _entry_point_entry(ep: EntryPoint) -> RegistryEntry:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    source = f"entry point ({dist})"
    if ":" in ep.value:
        return RegistryEntry(name=normalize_name(ep.name), environment=ep.value, source=source)
    # A package that is an environment folder: its own app, run from where it is installed.
    spec = importlib.util.find_spec(ep.value)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{ep.value!r} is neither 'module:Class' nor an installed package")
    return folder_entry(Path(list(spec.submodule_search_locations)[0]), ep.name, source=source)


def _entry_points() -> list[RegistryEntry]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append(_entry_point_entry(ep))
        except (ValueError, ImportError) as e:
            warnings.warn(f"entry point {ep.name!r} = {ep.value!r} in {ENTRY_POINT_GROUP}: {e}; ignored", stacklevel=3)
    return found


def environments() -> dict[str, RegistryEntry]:
    """Every known environment by name: registry.yaml, then registered folders, then entry points.

    An earlier source wins a name; a later one that also claims it is ignored with a warning.
    """
    found = {entry.name: entry for entry in load_registry()}
    with _LOCK:
        found.update((name, entry) for name, entry in _REGISTERED.items() if name not in found)
    for entry in _entry_points():
        if entry.name in found:
            if found[entry.name] != entry:
                warnings.warn(f"{entry.source}: {entry.name!r} is already {found[entry.name].source}'s; ignored", stacklevel=2)
        else:
            found[entry.name] = entry
    return found


def find(name: str) -> RegistryEntry:
    """The entry for ``name`` (any spelling :func:`normalize_name` accepts).

    Raises:
        UnknownEnvironment: naming the closest known environments.
    """
    known = environments()
    key = normalize_name(name)
    if key in known:
        return known[key]
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvironment(f"no environment named {name!r}.{hint} Known: {', '.join(sorted(known))}")


def find_folder(folder: str | Path) -> RegistryEntry | None:
    """The known environment served from ``folder``, if there is one."""
    folder = Path(folder).resolve()
    return next((e for e in environments().values() if e.server is not None and e.server == folder), None)


def folder_entry(folder: str | Path, name: str | None = None, *, source: str = "folder") -> RegistryEntry:
    """The entry for an OpenEnv environment folder: its own app, from its ``openenv.yaml``.

    A folder without ``openenv.yaml`` (some of upstream's) is read as OpenEnv reads it:
    named after the folder, app ``server.app:app``, port 8000.

    Raises:
        ManifestError: the ``openenv.yaml`` is invalid.
        ValueError: the folder or its app module does not exist, or the name is not usable.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such environment folder")
    manifest = manifest_of(folder)
    module = manifest.app.partition(":")[0]
    if not any((folder / Path(*module.split("."))).with_suffix(suffix).exists() for suffix in (".py", "")):
        raise ValueError(f"{folder}: its app {manifest.app!r} has no module {module.replace('.', '/')}.py in the folder")
    key = normalize_name(name or manifest.name)
    if not _NAME.match(key):
        raise ValueError(f"{folder}: {key!r} cannot be a gym name (lowercase letters, digits, underscores); pass name=")
    return RegistryEntry(
        name=key, environment=folder_target(manifest.app, folder), server=folder, providers=FOLDER_PROVIDERS, source=source
    )


def manifest_of(folder: Path) -> Manifest:
    """``folder/openenv.yaml``, or OpenEnv's defaults for a folder without one (named after the folder)."""
    if (folder / MANIFEST_FILE).is_file():
        return load_manifest(folder)
    return parse_manifest({"name": re.sub(r"[^a-z0-9_-]", "_", folder.name.lower())}, folder)


def register(entry: RegistryEntry) -> str:
    """Add a run-time entry (a folder) to the table and to gymnasium; return its id.

    Raises:
        ValueError: the name is already another environment's.
    """
    with _LOCK:
        taken = {e.name: e for e in load_registry()} | _REGISTERED
        current = taken.get(entry.name)
        if current is not None and current != entry:
            where = current.server or current.environment
            raise ValueError(f"{entry.id} is already {current.source}'s ({where}); pass name= to register {entry.server} under another")
        _REGISTERED[entry.name] = entry
    return entry.register()


def register_folder(path: str | Path, name: str | None = None) -> str:
    """Make an OpenEnv environment folder a gym id; return it (``openenv/<name>-v0``).

    ``gym.make`` / ``gym.make_vec`` on the id start the folder's own server, unmodified:
    ``provider="local"`` (default) runs its app (``openenv.yaml``'s ``app``, by default
    ``server.app:app``) in a child process from the folder, with the folder and its parent
    importable, on the Python environment it is called from (the folder's dependencies
    installed there); ``provider="docker"`` builds and runs its Dockerfile. gym_openenv's
    own server folders return their registry id. The registration lasts for this process.

    Args:
        path: the folder (``models.py``, ``server/app.py``, usually ``openenv.yaml``).
        name: the gym name (default: the manifest's, else the folder's, without ``_env``).

    Raises:
        ValueError: not an environment folder, or the name is another environment's.
        ManifestError: its ``openenv.yaml`` is invalid.

    Example:
        >>> import tempfile, gymnasium as gym
        >>> from gym_openenv.templates import scaffold
        >>> parent = tempfile.TemporaryDirectory()
        >>> _ = scaffold(Path(parent.name), "maze_env")         # the folder `gym-openenv init maze_env` writes
        >>> env_id = register_folder(Path(parent.name) / "maze_env")
        >>> env_id
        'openenv/maze-v0'
        >>> env = gym.make(env_id)
        >>> obs, info = env.reset(seed=0)
        >>> env.close(); parent.cleanup()
    """
    own = find_folder(path)
    if own is not None and (name is None or normalize_name(name) == own.name):
        return own.register()
    return register(folder_entry(path, name))


def register_all() -> None:
    """Register every registry.yaml entry, every entry point and ``openenv/remote-v0`` with gymnasium (idempotent)."""
    for entry in load_registry():
        entry.register()
    for entry in _entry_points():
        if entry.id not in gymnasium.registry:
            entry.register()
    if gym_id("remote") not in gymnasium.registry:
        # Any server: nondeterministic unless it says otherwise (/metadata "deterministic", see OpenEnvEnv.spec).
        gymnasium.register(id=gym_id("remote"), entry_point=TOOL_ENTRY_POINT, vector_entry_point=TOOL_VECTOR_ENTRY_POINT, nondeterministic=True)
