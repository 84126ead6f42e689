"""Typed models of the Atari environment (the Arcade Learning Environment).

Field names are upstream OpenEnv's ``atari_env`` names, so a client written for
upstream's Atari environment plays this server over OpenEnv's JSON protocol:
it sends ``{"action_id": 3}`` and reads ``screen`` (one flat list, as upstream
sends it, with ``screen_shape``), ``legal_actions`` and ``lives``.

The annotated spaces are those of ``ALE/Pong-v5`` with RGB observations; the
environment refines them per game and ``obs_type`` through
``AtariEnvironment.field_spaces()`` (e.g. ``Discrete(4)`` for Breakout,
``Box(0, 255, (128,), uint8)`` for RAM observations). Only ``action_id`` and
``screen`` are part of the spaces, so a gymnasium user sees ``Discrete(n)``
actions and the frame itself, as with ``ALE/<Game>-v5``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import FLAT_IN_JSON, NOT_IN_SPACE

__all__ = ["AtariAction", "AtariObservation", "AtariState"]

#: ALE's screen: 210 rows, 160 columns, RGB.
SCREEN_SHAPE = (210, 160, 3)


@dataclass
class AtariAction(Action):
    """Index into the game's action set (minimal by default, 18 with ``full_action_space``).

    ``game_name``, ``obs_type`` and ``full_action_space`` are accepted because
    upstream's typed client sends them with every action; as on upstream's
    server they change nothing: the server's arguments choose the game.
    """

    action_id: Annotated[int, Discrete(18)]
    game_name: Annotated[str | None, NOT_IN_SPACE] = None
    obs_type: Annotated[str | None, NOT_IN_SPACE] = None
    full_action_space: Annotated[bool | None, NOT_IN_SPACE] = None


@dataclass
class AtariObservation(Observation):
    """What ``ALE/<Game>-v5`` returns from ``reset``/``step``.

    ``screen`` is the observation proper: the RGB screen, the grayscale screen
    or the 128 bytes of console RAM, as chosen by ``obs_type``. Everything
    else reaches gymnasium users in ``info``: ``screen_shape``,
    ``legal_actions`` (every index of the action set, as upstream reports
    them) and the lives and frame counters ALE reports in its own ``info``.
    """

    screen: Annotated[np.ndarray, Box(0, 255, SCREEN_SHAPE, np.uint8), FLAT_IN_JSON]
    screen_shape: Annotated[list[int], NOT_IN_SPACE] = field(default_factory=list)
    legal_actions: Annotated[list[int], NOT_IN_SPACE] = field(default_factory=list)
    lives: int = 0
    episode_frame_number: int = 0
    frame_number: int = 0


@dataclass
class AtariState(State):
    """Which game the session plays, with which settings, and how far the emulator has run."""

    game_name: str = "pong"
    obs_type: str = "rgb"
    full_action_space: bool = False
    mode: int | None = None
    difficulty: int | None = None
    repeat_action_probability: float = 0.25
    frameskip: int | list[int] = 4
    lives: int = 0
    episode_frame_number: int = 0
    frame_number: int = 0
