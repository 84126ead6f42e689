"""Typed models of the Atari environment (the Arcade Learning Environment).

The annotated spaces are those of ``ALE/Pong-v5`` with RGB observations; the
environment refines them per game and ``obs_type`` through
``AtariEnvironment.field_spaces()`` (e.g. ``Discrete(4)`` for Breakout,
``Box(0, 255, (128,), uint8)`` for RAM observations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.models import Action, Observation, State

__all__ = ["AtariAction", "AtariObservation", "AtariState"]

#: ALE's screen: 210 rows, 160 columns, RGB.
SCREEN_SHAPE = (210, 160, 3)


@dataclass
class AtariAction(Action):
    """Index into the game's action set (minimal by default, 18 with ``full_action_space``)."""

    action_id: Annotated[int, Discrete(18)]


@dataclass
class AtariObservation(Observation):
    """What ``ALE/<Game>-v5`` returns from ``reset``/``step``.

    ``screen`` is the observation proper: the RGB screen, the grayscale screen
    or the 128 bytes of console RAM, as chosen by ``obs_type``. The frame
    counters and lives are what ALE reports in ``info``.
    """

    screen: Annotated[np.ndarray, Box(0, 255, SCREEN_SHAPE, np.uint8)]
    lives: int = 0
    episode_frame_number: int = 0
    frame_number: int = 0


@dataclass
class AtariState(State):
    """Which game the session plays and how far the emulator has run."""

    game: str = "pong"
    lives: int = 0
    episode_frame_number: int = 0
    frame_number: int = 0
