"""Typed models of the OpenSpiel server.

Field names are upstream OpenEnv's ``openspiel_env`` names, so a client written
for upstream's OpenSpiel environment plays this server over OpenEnv's JSON
protocol: it sends ``{"action_id": 4}`` and reads ``info_state`` (one flat list
of floats over JSON, as upstream sends it), ``legal_actions``,
``current_player_id``, ``game_phase`` and ``opponent_last_action``.

The spaces declared here are placeholders: the number of actions, the tensor
shape and the number of players depend on the game, so the environment refines
them per instance through ``field_spaces()``. What reaches a gymnasium user:

* action: ``Discrete(num_distinct_actions)``;
* observation: ``Dict(info_state=Box(float32, tensor shape),
  action_mask=Box(0, 1, (num_distinct_actions,), int8),
  current_player_id=Discrete(num_players))``;
* info: ``legal_actions``, ``game_phase``, ``opponent_last_action``, ``text``,
  ``rewards``, ``returns``, ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import FLAT_IN_JSON, NOT_IN_SPACE

__all__ = ["OpenSpielAction", "OpenSpielObservation", "OpenSpielState"]


@dataclass
class OpenSpielAction(Action):
    """The action id to play for the seat whose turn it is (see ``legal_actions``).

    ``game_name`` and ``game_params`` are accepted because upstream's typed
    client sends them with every action; as on upstream's server they change
    nothing: the server's arguments choose the game.
    """

    action_id: Annotated[int, Discrete(1)]
    game_name: Annotated[str | None, NOT_IN_SPACE] = None
    game_params: Annotated[dict[str, Any], NOT_IN_SPACE] = field(default_factory=dict)


@dataclass
class OpenSpielObservation(Observation):
    """What the seat the observation is for sees, and how the last move paid off.

    ``info_state`` is the seat's tensor in the game's shape: its observation
    tensor, or its information-state tensor for games without one (OpenSpiel's
    ``rl_environment`` makes the same choice for its ``info_state``).
    ``current_player_id`` is the seat the observation is for, which is the seat
    to move while the game runs. ``game_phase`` is "initial" after a reset,
    "terminal" at the end, "playing" in between; ``opponent_last_action`` is the
    last move a server-side opponent made (single-agent mode).

    ``reward`` is the reward of the seat that just acted (single-agent mode:
    always the client's seat, summed over the opponents' replies and chance
    events up to the client's next turn). ``rewards`` has the same transition's
    reward for every seat and ``returns`` the episode's running total per seat.
    """

    info_state: Annotated[np.ndarray, Box(-np.inf, np.inf, (1,), np.float32), FLAT_IN_JSON]
    action_mask: Annotated[np.ndarray, Box(0, 1, (1,), np.int8)]
    current_player_id: Annotated[int, Discrete(1)]
    # Not part of the space (they travel in ``info``).
    legal_actions: Annotated[list[int], NOT_IN_SPACE] = field(default_factory=list)
    game_phase: Annotated[str, NOT_IN_SPACE] = "playing"
    opponent_last_action: int | None = None
    text: str | None = None
    rewards: Annotated[list[float], NOT_IN_SPACE] = field(default_factory=list)
    returns: Annotated[list[float], NOT_IN_SPACE] = field(default_factory=list)
    error: str | None = None


@dataclass
class OpenSpielState(State):
    """The game and the session's settings, and the whole game so far for replay
    and debugging: ``history`` includes chance outcomes and every seat's moves,
    so it reveals hidden information."""

    game_name: str = ""
    game_params: dict[str, Any] = field(default_factory=dict)
    num_players: int = 1
    agent_player: int | None = 0
    opponent_policy: str | None = "random"
    current_player_id: int = 0
    history: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    is_terminal: bool = False
