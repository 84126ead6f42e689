"""Base types for actions, observations and state, with OpenEnv's field names.

Environment models are plain dataclasses that subclass these bases (pydantic
models work too). The bases are keyword-only, so a subclass can declare its own
fields positionally::

    @dataclass
    class EchoAction(Action):
        message: Annotated[str, Text(max_length=1024)]

Fields annotated with a gymnasium space (see :mod:`gym_openenv.spaces`) form
the gymnasium observation/action space; the rest travel in ``info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Action", "Observation", "State", "RESERVED_OBSERVATION_FIELDS"]


@dataclass(kw_only=True)
class Action:
    """Base action. ``metadata`` is free-form and never part of the space."""

    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Observation:
    """Base observation.

    ``done`` ends the episode (OpenEnv's name). ``truncated`` is our addition so
    gymnasium's ``terminated``/``truncated`` stay apart: an episode that ends by
    a time or step limit sets both ``done`` and ``truncated``.
    """

    done: bool = False
    reward: float | None = None
    truncated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


#: Observation fields that are part of the step result, never of the space.
RESERVED_OBSERVATION_FIELDS = frozenset({"done", "reward", "truncated", "metadata"})


@dataclass(kw_only=True)
class State:
    """Base state: which episode a session is in and how far along it is."""

    episode_id: str | None = None
    step_count: int = 0
