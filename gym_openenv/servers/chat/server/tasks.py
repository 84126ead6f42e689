"""Tasks: the other side of a chat episode, and its reward.

A task writes the user's messages and scores the agent's replies. The
environment handles tokens, turn limits and the conversation record; a task
sees and returns plain text. Two tasks ship here; your own is any
:class:`ChatTask` subclass, named to the environment as ``"module:Class"``::

    class Politeness(ChatTask):
        def __init__(self, rounds: int = 1):
            self.rounds = rounds

        def reset(self, rng):
            self.left = self.rounds
            return "Say hello."

        def score(self, reply):
            self.left -= 1
            reward = 1.0 if "please" in reply.lower() else 0.0
            return TaskReply(reward, done=self.left == 0, message=None if self.left == 0 else "Again.")

    gym.make("openenv/chat-v0", task="my_pkg.tasks:Politeness", task_kwargs={"rounds": 2})
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gym_openenv.manifest import import_object

__all__ = ["ArithmeticTask", "BUILTIN_TASKS", "ChatTask", "ConstrainedReplyTask", "TaskReply", "load_task"]


@dataclass
class TaskReply:
    """The task's answer to one agent reply.

    Attributes:
        reward: the reply's score.
        done: the task is over (the episode terminates).
        message: the next user message; required unless ``done``.
        info: anything worth showing the user (lands in the observation's ``task_info``).
    """

    reward: float
    done: bool
    message: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ChatTask(ABC):
    """Plays the user in a conversation and scores the agent.

    One instance serves one session; the environment calls :meth:`reset` at
    the start of every episode and :meth:`score` once per agent reply.
    """

    @abstractmethod
    def reset(self, rng: np.random.Generator) -> str:
        """Start an episode; return the first user message. Draw randomness from ``rng`` only,
        so that a seeded reset reproduces the episode."""

    @abstractmethod
    def score(self, reply: str) -> TaskReply:
        """Score the agent's ``reply`` and say what the user says next."""

    def info(self) -> dict[str, Any]:
        """What the task can show about the current question (e.g. the expected answer)."""
        return {}


def _check_rounds(rounds: int) -> int:
    if rounds < 1:
        raise ValueError(f"task_kwargs.rounds: {rounds} must be at least 1")
    return rounds


class ArithmeticTask(ChatTask):
    """Asks ``rounds`` arithmetic questions; a reply scores 1 when it is exactly
    the answer (surrounding whitespace aside), else 0.

    Args:
        rounds: questions per episode.
        max_operand: operands are drawn from ``[0, max_operand]``.
        operations: which of ``+ - *`` to ask.
    """

    def __init__(self, rounds: int = 3, max_operand: int = 20, operations: str = "+-*"):
        self.rounds = _check_rounds(rounds)
        if max_operand < 1:
            raise ValueError(f"task_kwargs.max_operand: {max_operand} must be at least 1")
        if not operations or set(operations) - set("+-*"):
            raise ValueError(f"task_kwargs.operations: {operations!r} must be a non-empty string of '+', '-', '*'")
        self.max_operand = max_operand
        self.operations = operations
        self._rng = np.random.default_rng()
        self.asked = 0
        self.answer = ""

    def reset(self, rng: np.random.Generator) -> str:
        self._rng = rng
        self.asked = 0
        return self._ask()

    def _ask(self) -> str:
        a, b = (int(x) for x in self._rng.integers(0, self.max_operand + 1, size=2))
        op = self.operations[int(self._rng.integers(len(self.operations)))]
        self.answer = str({"+": a + b, "-": a - b, "*": a * b}[op])
        self.asked += 1
        return f"What is {a} {op} {b}?"

    def score(self, reply: str) -> TaskReply:
        correct = reply.strip() == self.answer
        verdict = "Correct." if correct else f"Wrong, it is {self.answer}."
        info = {"answer": self.answer, "correct": correct}
        if self.asked >= self.rounds:
            return TaskReply(float(correct), done=True, info=info)
        return TaskReply(float(correct), done=False, message=f"{verdict} {self._ask()}", info=info)

    def info(self) -> dict[str, Any]:
        return {"answer": self.answer}


DEFAULT_WORDS = (
    "river", "apple", "green", "music", "stone", "cloud", "light", "winter", "garden", "bread",
    "ocean", "paper", "silver", "forest", "candle", "window", "horse", "summer", "mountain", "coffee",
)  # fmt: skip


class ConstrainedReplyTask(ChatTask):
    """Asks for a reply under N words that contains a given word. Half the
    reward for each rule met: a non-empty reply of fewer than N words, and the
    word present (as a whole word, any case).

    Args:
        rounds: requests per episode.
        min_words, max_words: N is drawn from ``[min_words, max_words]``.
        words: the words to ask for.
    """

    def __init__(
        self, rounds: int = 3, min_words: int = 3, max_words: int = 12, words: Sequence[str] = DEFAULT_WORDS
    ):
        self.rounds = _check_rounds(rounds)
        if not 1 <= min_words <= max_words:
            raise ValueError(f"task_kwargs.min_words/max_words: need 1 <= {min_words} <= {max_words}")
        if not words or any(not re.fullmatch(r"\w+", w) for w in words):
            raise ValueError(f"task_kwargs.words: {list(words)!r} must be non-empty single words")
        self.min_words, self.max_words, self.words = min_words, max_words, tuple(words)
        self._rng = np.random.default_rng()
        self.asked = 0
        self.limit, self.word = max_words, words[0]

    def reset(self, rng: np.random.Generator) -> str:
        self._rng = rng
        self.asked = 0
        return self._ask()

    def _ask(self) -> str:
        self.limit = int(self._rng.integers(self.min_words, self.max_words + 1))
        self.word = self.words[int(self._rng.integers(len(self.words)))]
        self.asked += 1
        return f"Reply in under {self.limit} words and use the word '{self.word}'."

    def score(self, reply: str) -> TaskReply:
        words = re.findall(r"\w+", reply.lower())
        short = 0 < len(words) < self.limit
        contains = self.word.lower() in words
        info = {"limit": self.limit, "word": self.word, "words": len(words), "short": short, "contains": contains}
        reward = 0.5 * short + 0.5 * contains
        if self.asked >= self.rounds:
            return TaskReply(reward, done=True, info=info)
        return TaskReply(reward, done=False, message=self._ask(), info=info)

    def info(self) -> dict[str, Any]:
        return {"limit": self.limit, "word": self.word}


#: Short names for the shipped tasks.
BUILTIN_TASKS: dict[str, type[ChatTask]] = {"arithmetic": ArithmeticTask, "constrained": ConstrainedReplyTask}


def load_task(name: str, kwargs: Mapping[str, Any] | None = None) -> ChatTask:
    """A task from a built-in name or a ``"module:Class"`` import string.

    Raises:
        ValueError: naming ``task`` when it cannot be found or is not a ChatTask,
            or ``task_kwargs`` when the class rejects them.
    """
    if name in BUILTIN_TASKS:
        cls: Any = BUILTIN_TASKS[name]
    else:
        if ":" not in name:
            raise ValueError(f"task: {name!r} is neither a built-in task {sorted(BUILTIN_TASKS)} nor 'module:Class'")
        try:
            cls = import_object(name)
        except ImportError as e:
            raise ValueError(f"task: cannot import {name!r}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, ChatTask)):
            raise ValueError(f"task: {name!r} is not a ChatTask subclass")
    try:
        return cls(**dict(kwargs or {}))
    except TypeError as e:
        raise ValueError(f"task_kwargs: {dict(kwargs or {})!r} do not fit {cls.__name__}: {e}") from None
