"""Typed models of the BrowserGym environment (MiniWoB++ tasks on Chromium).

The action is BrowserGym action text (``click("12")``); the observation
holds the task's goal, the page as text with element ids (bids), a
screenshot and the last action's error. The screenshot's shape follows the
server's ``viewport`` argument; the default is MiniWoB's native 160x210.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import text

__all__ = [
    "ACTION_MAX_LENGTH",
    "DEFAULT_VIEWPORT",
    "BrowserGymAction",
    "BrowserGymObservation",
    "BrowserGymState",
    "screenshot_space",
]

#: MiniWoB's task area: 160 pixels wide, 210 high.
DEFAULT_VIEWPORT = (160, 210)
ACTION_MAX_LENGTH = 4096
#: Goals and errors are short; the page text of a MiniWoB task is a few KB.
GOAL_MAX_LENGTH = 1024
ERROR_MAX_LENGTH = 1024
DOM_TEXT_MAX_LENGTH = 65536


def screenshot_space(viewport: tuple[int, int]) -> Box:
    """RGB screenshot of a ``(width, height)`` viewport: ``(height, width, 3)`` uint8."""
    width, height = viewport
    return Box(0, 255, shape=(height, width, 3), dtype=np.uint8)


@dataclass
class BrowserGymAction(Action):
    """BrowserGym action text, e.g. ``click("12")`` or ``fill("5", "Alice")``;
    several calls may be given one per line."""

    action: Annotated[str, text(ACTION_MAX_LENGTH)]


@dataclass
class BrowserGymObservation(Observation):
    """What the agent sees after a reset or step.

    ``url`` is not part of the space; it reaches gymnasium users in ``info``.
    """

    goal: Annotated[str, text(GOAL_MAX_LENGTH)] = ""
    dom_text: Annotated[str, text(DOM_TEXT_MAX_LENGTH)] = ""
    screenshot: Annotated[np.ndarray, screenshot_space(DEFAULT_VIEWPORT)] = field(
        default_factory=lambda: np.zeros((DEFAULT_VIEWPORT[1], DEFAULT_VIEWPORT[0], 3), np.uint8)
    )
    last_action_error: Annotated[str, text(ERROR_MAX_LENGTH)] = ""
    url: str | None = None


@dataclass
class BrowserGymState(State):
    """Session state: the task and the seed its current episode was generated from."""

    task: str = ""
    task_seed: int | None = None
