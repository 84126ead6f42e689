"""registry.yaml -> gymnasium ids.

Each entry becomes ``openenv/<name>-v0``, made by :class:`gym_openenv.env.OpenEnvEnv`
(``gym.make``) or :class:`gym_openenv.vector.OpenEnvVectorEnv` (``gym.make_vec``).
``openenv/remote-v0`` drives any running OpenEnv server: ``gym.make("openenv/remote-v0", url=...)``.
"""

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import yaml

from gym_openenv.errors import UnknownEnvironment

__all__ = ["RegistryEntry", "find", "gym_id", "load_registry", "register_all", "REGISTRY_PATH"]

#: registry.yaml inside the package, beside ``servers/``.
REGISTRY_PATH = Path(__file__).resolve().parent / "registry.yaml"
ENTRY_POINT = "gym_openenv.env:OpenEnvEnv"
VECTOR_ENTRY_POINT = "gym_openenv.vector:OpenEnvVectorEnv"
KNOWN_PROVIDERS = ("local", "sandbox", "docker", "ray", "remote")


@dataclass(frozen=True)
class RegistryEntry:
    """One environment of registry.yaml, validated."""

    name: str
    environment: str
    server: str
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    providers: tuple[str, ...] = ("local",)

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum():
            raise ValueError(f"registry: name {self.name!r} must be letters, digits and underscores")
        if ":" not in self.environment:
            raise ValueError(f"registry: {self.name}.environment must be 'module:Class', got {self.environment!r}")
        unknown = set(self.providers) - set(KNOWN_PROVIDERS)
        if unknown:
            raise ValueError(f"registry: {self.name}.providers has unknown {sorted(unknown)}; known: {KNOWN_PROVIDERS}")

    @property
    def id(self) -> str:
        return gym_id(self.name)


def gym_id(name: str) -> str:
    return f"openenv/{name}-v0"


@functools.lru_cache(maxsize=None)
def load_registry(path: Path = REGISTRY_PATH) -> tuple[RegistryEntry, ...]:
    """Parse and validate registry.yaml (once per path)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    entries = []
    for raw in data.get("environments", []):
        raw = dict(raw)
        raw["providers"] = tuple(raw.get("providers") or ("local",))
        raw["kwargs"] = dict(raw.get("kwargs") or {})
        try:
            entries.append(RegistryEntry(**raw))
        except TypeError as e:
            raise ValueError(f"registry: bad entry {raw.get('name', raw)!r}: {e}") from None
    names = [e.name for e in entries]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"registry: duplicate names {sorted(duplicates)}")
    return tuple(entries)


def find(name: str) -> RegistryEntry:
    """The entry for ``name`` (``atari``, ``atari-env``, ``openenv/atari-v0``...).

    Raises:
        UnknownEnvironment: with the closest names.
    """
    key = name.removeprefix("openenv/").removesuffix("-v0").replace("-", "_").removesuffix("_env")
    entries = {e.name: e for e in load_registry()}
    if key in entries:
        return entries[key]
    close = difflib.get_close_matches(key, entries, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvironment(f"no environment named {name!r}.{hint} Known: {', '.join(sorted(entries))}")


def register_all() -> None:
    """Register every registry entry (and ``openenv/remote-v0``) with gymnasium (idempotent)."""
    for entry in load_registry():
        if entry.id not in gymnasium.registry:
            gymnasium.register(
                id=entry.id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                max_episode_steps=entry.max_episode_steps,
                kwargs={"environment": entry.environment, **entry.kwargs},
            )
    if gym_id("remote") not in gymnasium.registry:
        # Any server: nondeterministic unless it says otherwise (/metadata "deterministic", see OpenEnvEnv.spec).
        gymnasium.register(id=gym_id("remote"), entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, nondeterministic=True)
