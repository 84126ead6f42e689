"""Typed models of the chat environment.

Token sequences are fixed-size, zero-padded ``int64`` boxes with a ``length``
field: unlike ``Sequence(Discrete(vocab))``, such a ``Dict`` batches into
plain arrays in gymnasium's and Stable-Baselines3's vector envs and passes
``check_env``. Only the first ``length`` entries count. The declared sizes are
placeholders; the environment sets them from its tokenizer and limits through
``field_spaces()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import NOT_IN_SPACE, SHORTER_ACCEPTED

__all__ = ["ChatAction", "ChatObservation", "ChatState"]


@dataclass
class ChatAction(Action):
    """The agent's reply as token ids: ``tokens[:length]``.

    Any caller may send fewer ids than the box holds and leave ``length`` at
    None to use all of them: upstream OpenEnv's ``chat_env`` client sends
    ``{"tokens": [...]}``, a list of any length up to ``max_reply_tokens``.
    """

    tokens: Annotated[np.ndarray, Box(0, 1, (1,), np.int64), SHORTER_ACCEPTED]
    length: Annotated[int | None, Discrete(2)] = None


@dataclass
class ChatObservation(Observation):
    """The conversation so far as tokens (the last ``max_context_tokens`` of
    it, ending where the assistant replies next), with its text in ``info``.

    ``messages`` is the whole conversation as ``[{"role", "content"}]``, as
    upstream OpenEnv's ``chat_env`` observation carries it.
    """

    tokens: Annotated[np.ndarray, Box(0, 1, (1,), np.int64)]
    length: Annotated[int, Discrete(2)]
    text: str | None = None
    message: str | None = None
    reply: str | None = None
    turn: int = 0
    task_info: dict[str, Any] = field(default_factory=dict)
    messages: Annotated[list[dict[str, str]], NOT_IN_SPACE] = field(default_factory=list)


@dataclass
class ChatState(State):
    """The conversation as ``[{"role": "user" | "assistant", "content": ...}]``."""

    task: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
