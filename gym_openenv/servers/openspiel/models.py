"""Typed models of the OpenSpiel server.

The spaces declared here are placeholders: the number of actions, the tensor
shape and the number of players depend on the game, so the environment refines
them per instance through ``field_spaces()``. What reaches a gymnasium user:

* action: ``Discrete(num_distinct_actions)``;
* observation: ``Dict(observation=Box(float32, tensor shape),
  action_mask=Box(0, 1, (num_distinct_actions,), int8),
  current_player=Discrete(num_players))``;
* info: ``text``, ``legal_actions``, ``rewards``, ``returns``, ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.models import Action, Observation, State

__all__ = ["OpenSpielAction", "OpenSpielObservation", "OpenSpielState"]


@dataclass
class OpenSpielAction(Action):
    """The action id to play for the seat whose turn it is (see ``legal_actions``)."""

    action_id: Annotated[int, Discrete(1)]


@dataclass
class OpenSpielObservation(Observation):
    """What the seat the observation is for sees, and how the last move paid off.

    ``reward`` is the reward of the seat that just acted (single-agent mode:
    always the client's seat, summed over the opponents' replies and chance
    events up to the client's next turn). ``rewards`` has the same transition's
    reward for every seat and ``returns`` the episode's running total per seat.
    """

    observation: Annotated[np.ndarray, Box(-np.inf, np.inf, (1,), np.float32)]
    action_mask: Annotated[np.ndarray, Box(0, 1, (1,), np.int8)]
    current_player: Annotated[int, Discrete(1)]
    # Not part of the space (plain types travel in ``info``).
    text: str | None = None
    legal_actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class OpenSpielState(State):
    """The whole game, for replay and debugging: ``history`` includes chance
    outcomes and every seat's moves, so it reveals hidden information."""

    game: str = ""
    current_player: int = 0
    history: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    is_terminal: bool = False
