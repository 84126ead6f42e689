"""Typed models of the BrowserGym environment (MiniWoB++ tasks on Chromium).

The action is BrowserGym action text (``click("12")``); the observation
holds the task's goal, the page as text with element ids (bids), a
screenshot and the last action's error. The screenshot's shape follows the
server's ``viewport`` argument; the default is MiniWoB's native 160x210.

Field names are upstream OpenEnv's ``browsergym_env`` names (``action_str``
in; ``goal``, ``text``, ``screenshot``, ``error``, ``last_action_error``,
``url`` out), so a client written for upstream's BrowserGym environment plays
this server over OpenEnv's JSON protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import NOT_IN_SPACE
from gym_openenv.spaces import text as text_space  # a field is named `text`

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

    action_str: Annotated[str, text_space(ACTION_MAX_LENGTH)]


@dataclass
class BrowserGymObservation(Observation):
    """What the agent sees after a reset or step.

    ``text`` is the visible page as text, one element per line with its bid;
    ``error`` says why the last action failed ("" when it did not).
    ``last_action_error`` (whether ``error`` is set) and ``url`` are not part
    of the space; they reach gymnasium users in ``info``.
    """

    goal: Annotated[str, text_space(GOAL_MAX_LENGTH)] = ""
    text: Annotated[str, text_space(DOM_TEXT_MAX_LENGTH)] = ""
    screenshot: Annotated[np.ndarray, screenshot_space(DEFAULT_VIEWPORT)] = field(
        default_factory=lambda: np.zeros((DEFAULT_VIEWPORT[1], DEFAULT_VIEWPORT[0], 3), np.uint8)
    )
    error: Annotated[str, text_space(ERROR_MAX_LENGTH)] = ""
    last_action_error: Annotated[bool, NOT_IN_SPACE] = False
    url: Annotated[str, NOT_IN_SPACE] = ""

    def __post_init__(self) -> None:
        self.last_action_error = bool(self.error)


@dataclass
class BrowserGymState(State):
    """Session state: the benchmark, the task and the seed its current episode was generated from."""

    benchmark: str = "miniwob"
    task_name: str = ""
    task_seed: int | None = None
