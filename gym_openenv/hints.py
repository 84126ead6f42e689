"""Spaces for well-known upstream OpenEnv environments, where their schemas say too little.

Upstream Atari's ``action_id`` is a plain ``int`` and its ``screen`` a flat
``List[int]``; an RL user expects ``Discrete(n)`` of the game and a
``Box(0, 255, screen_shape, uint8)``, as ``ALE/<Game>-v5`` has. A
:class:`Hint` names the fields of one upstream environment (recognised by the
titles of its action and observation schemas) and the spaces they take;
where the space depends on the server's configuration (the game, the board
size), it is read from one reset observation (a probe session, opened and
closed before the environment's own).

A hint is a default: ``gym.make(..., action_space=..., observation_space=...)``
overrides it, and ``hints=False`` turns hints off.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["HINTS", "Hint", "find_hint"]

#: A space, or a function of the probe (reset observation fields, plus the session's
#: ``state`` under ``"state"`` where the hint asks for it) that returns one.
SpaceRule = spaces.Space | Callable[[Mapping[str, Any]], spaces.Space]


@dataclass(frozen=True)
class Hint:
    """Spaces for the fields of one upstream environment.

    Attributes:
        action: field -> space of the action (the action space keeps these fields).
        observation: field -> space; the observation space is exactly these
            fields (the others arrive in ``info``). Empty: the derived space.
        action_mask: the observation field that lists the legal action ids.
    """

    action: Mapping[str, SpaceRule] = field(default_factory=dict)
    observation: Mapping[str, SpaceRule] = field(default_factory=dict)
    action_mask: str | None = None
    needs_state: bool = False

    @property
    def needs_probe(self) -> bool:
        return any(callable(r) and not isinstance(r, spaces.Space) for r in (*self.action.values(), *self.observation.values()))

    def resolve(self, probe: Mapping[str, Any] | None) -> tuple[dict[str, spaces.Space], dict[str, spaces.Space]]:
        """(action spaces, observation spaces) by field, with probe-dependent spaces computed."""

        def space(rule: SpaceRule) -> spaces.Space:
            return rule if isinstance(rule, spaces.Space) else rule(probe or {})

        return {k: space(r) for k, r in self.action.items()}, {k: space(r) for k, r in self.observation.items()}


def _discrete_over(list_field: str) -> Callable[[Mapping[str, Any]], spaces.Space]:
    """``Discrete(max + 1)`` of the ids listed at reset (every action is legal then)."""

    def rule(probe: Mapping[str, Any]) -> spaces.Space:
        ids = probe.get(list_field) or [0]
        return spaces.Discrete(int(max(ids)) + 1)

    return rule


def _screen(probe: Mapping[str, Any]) -> spaces.Space:
    return spaces.Box(0, 255, tuple(int(d) for d in probe.get("screen_shape") or (210, 160, 3)), np.uint8)


def _vector_of(list_field: str, dtype: type = np.float32) -> Callable[[Mapping[str, Any]], spaces.Space]:
    def rule(probe: Mapping[str, Any]) -> spaces.Space:
        return spaces.Box(-np.inf, np.inf, (len(probe.get(list_field) or ()),), dtype)

    return rule


def _bounded_vector(probe: Mapping[str, Any]) -> spaces.Space:
    """dm_control's action: a Box of the task's action_spec (shape and bounds, from the session state)."""
    spec = (probe.get("state") or {}).get("action_spec") or {}
    shape = tuple(spec.get("shape") or (1,))
    low, high = spec.get("minimum", -np.inf), spec.get("maximum", np.inf)
    return spaces.Box(np.asarray(low, np.float64).reshape(shape), np.asarray(high, np.float64).reshape(shape), dtype=np.float64)


def _named_vectors(probe: Mapping[str, Any]) -> spaces.Space:
    """dm_control's observations: one Box per named array of the task's observation_spec."""
    spec = (probe.get("state") or {}).get("observation_spec") or {}
    return spaces.Dict({name: spaces.Box(-np.inf, np.inf, tuple(s.get("shape") or ()), np.float64) for name, s in spec.items()})


#: (action schema title, observation schema title) -> hint.
HINTS: dict[tuple[str, str], Hint] = {
    # Atari (ALE): the minimal action set of the game; the screen in its shape.
    ("AtariAction", "AtariObservation"): Hint(
        action={"action_id": _discrete_over("legal_actions")},
        observation={"screen": _screen},
        action_mask="legal_actions",
    ),
    # OpenSpiel: the actions legal at the first state (all of them, for the
    # games upstream ships: catch, tic_tac_toe, kuhn_poker, cliff_walking, 2048, blackjack).
    ("OpenSpielAction", "OpenSpielObservation"): Hint(
        action={"action_id": _discrete_over("legal_actions")},
        observation={"info_state": _vector_of("info_state")},
        action_mask="legal_actions",
    ),
    # Connect Four: 7 columns, a 6 x 7 board of -1 / 0 / 1.
    ("Connect4Action", "Connect4Observation"): Hint(
        action={"column": spaces.Discrete(7)},
        observation={"board": spaces.Box(-1, 1, (6, 7), np.int64)},
        action_mask="legal_actions",
    ),
    # Maze: left, up, right, down.
    ("MazeAction", "MazeObservation"): Hint(action={"action": spaces.Discrete(4)}, action_mask="legal_actions"),
    # dm_control: the loaded task's action_spec and observation_spec (a session's state).
    ("DMControlAction", "DMControlObservation"): Hint(
        action={"values": _bounded_vector},
        observation={"observations": _named_vectors},
        needs_state=True,
    ),
}


def find_hint(action_title: str, observation_title: str) -> Hint | None:
    """The hint for an environment whose schemas have these titles, if any."""
    return HINTS.get((action_title, observation_title))
