"""The environment interface every server in ``gym_openenv/servers/<name>/`` implements.

An environment is one session's worth of simulation: the server creates one
instance per session from the class and the server's keyword arguments
(``game="breakout"``), then calls :meth:`Environment.reset` and
:meth:`Environment.step` with typed models.

Example:
    >>> from dataclasses import dataclass
    >>> from gym_openenv.models import Action, Observation, State
    >>> @dataclass
    ... class CountAction(Action):
    ...     increment: bool
    >>> @dataclass
    ... class CountObservation(Observation):
    ...     total: float
    >>> class Counter(Environment[CountAction, CountObservation, State]):
    ...     action_type, observation_type = CountAction, CountObservation
    ...     def __init__(self):
    ...         self._state = State()
    ...         self.total = 0.0
    ...     def reset(self, seed=None, episode_id=None, **kwargs):
    ...         self._state = State(episode_id=episode_id)
    ...         self.total = 0.0
    ...         return CountObservation(total=self.total)
    ...     def step(self, action):
    ...         self._state.step_count += 1
    ...         self.total += action.increment
    ...         return CountObservation(total=self.total, reward=float(action.increment))
    ...     @property
    ...     def state(self):
    ...         return self._state
    >>> env = Counter()
    >>> env.reset().total, env.step(CountAction(increment=True)).reward
    (0.0, 1.0)
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from gymnasium import spaces

from gym_openenv.manifest import MANIFEST_FILE, load_manifest
from gym_openenv.models import Action, Observation, State

__all__ = ["Environment", "EnvironmentMetadata", "FieldSpaces", "folder_metadata"]

ActT = TypeVar("ActT")
ObsT = TypeVar("ObsT")
StateT = TypeVar("StateT")

#: Per-instance space refinements: ``{"action": {"field": space}, "observation": {...}}``.
FieldSpaces = Mapping[str, Mapping[str, spaces.Space]]


@dataclass
class EnvironmentMetadata:
    """What ``GET /metadata`` reports (OpenEnv's fields)."""

    name: str
    description: str = ""
    version: str | None = None
    author: str | None = None
    documentation_url: str | None = None
    readme_content: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Environment(ABC, Generic[ActT, ObsT, StateT]):
    """One session of an environment.

    Subclasses set :attr:`action_type`, :attr:`observation_type` (and
    :attr:`state_type` if they extend :class:`State`) and implement
    :meth:`reset`, :meth:`step` and :attr:`state`. The server calls them from a
    worker thread, never from its event loop, and never concurrently for one
    instance.
    """

    action_type: ClassVar[type] = Action
    observation_type: ClassVar[type] = Observation
    state_type: ClassVar[type] = State

    @abstractmethod
    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> ObsT:
        """Start a new episode and return its first observation."""

    @abstractmethod
    def step(self, action: ActT) -> ObsT:
        """Apply ``action`` and return the next observation (with reward and done)."""

    @property
    @abstractmethod
    def state(self) -> StateT:
        """The session's state: at least ``episode_id`` and ``step_count``."""

    def stream_step(self, action: ActT) -> Iterator[ObsT]:
        """Step, yielding partial observations while the step runs; the last
        one yielded is the step's result. Override for long-running steps
        (code execution) whose output should reach the client as it comes."""
        yield self.step(action)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the session holds (processes, browsers, files)."""

    def observe_into(self, buffers: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Write later observations' array fields straight into ``buffers`` (``{field: ndarray}``).

        The batch server lends each session its shared-memory slot this way; an
        environment that renders into the given array (and returns that array as
        the field's value) saves the server a copy per step. Ignoring it is fine.
        Keep the mapping, not its arrays: before a call the server may put another
        slot of the same shape and dtype into it (slots used in turns, gym_openenv.shm).
        """

    def field_spaces(self) -> FieldSpaces:
        """Spaces that depend on this instance's configuration.

        Override when a field's space is known only at construction, e.g. the
        number of Atari actions for the chosen game. Every instance made with
        the same server arguments must return the same spaces.
        """
        return {}

    def metadata(self) -> EnvironmentMetadata:
        """What ``GET /metadata`` shows: by default the name, version and description
        written in the environment folder's ``openenv.yaml`` (:func:`folder_metadata`).
        Override to add what depends on the instance:
        ``dataclasses.replace(super().metadata(), extra={"game": self.game})``."""
        return folder_metadata(type(self))

    @classmethod
    def step_batch(cls, envs: Sequence[Environment], actions: Sequence[Any]) -> list[Any]:
        """Step many sessions of this class at once (one call per server message).

        The default steps them one after another; an environment with a native
        vectorized backend overrides this to step them together. Must return
        exactly what ``[env.step(a) for env, a in zip(envs, actions)]`` would.
        """
        return [env.step(action) for env, action in zip(envs, actions)]


def folder_metadata(cls: type) -> EnvironmentMetadata:
    """Name, version and description from the ``openenv.yaml`` of the folder ``cls`` is
    defined in (its module's folder, or the one above, as for OpenEnv's
    ``server/<name>_environment.py``): the one place they are written. Without one,
    the class name and docstring."""
    module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if module_file is not None:
        for folder in Path(module_file).resolve().parents[:2]:
            if (folder / MANIFEST_FILE).is_file():
                manifest = load_manifest(folder)
                return EnvironmentMetadata(name=manifest.name, description=manifest.description or "", version=manifest.version)
    return EnvironmentMetadata(name=cls.__name__, description=(cls.__doc__ or "").strip())
