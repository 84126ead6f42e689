"""Conversational RL on tokens.

The task (see :mod:`gym_openenv.servers.chat.server.tasks`) speaks first; the agent
replies with token ids; the task scores the decoded reply and speaks again,
until the task is done (``done``) or ``max_turns`` replies were made (``done``
and ``truncated``). The observation is the conversation rendered by the
tokenizer, ``<|user|>...<|assistant|>reply<|end|><|user|>...<|assistant|>``,
cut to its last ``max_context_tokens`` tokens and zero-padded; ``info`` has
its text, the latest user message and reply, and what the task reports
(``task_info``: ``question`` about the open question, ``scored`` about the
reply just scored).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces
from gym_openenv.servers.chat.models import ChatAction, ChatObservation, ChatState
from gym_openenv.servers.chat.server.tasks import TaskReply, load_task
from gym_openenv.servers.chat.server.tokenizer import ChatTokenizer

__all__ = ["ChatEnvironment"]


class ChatEnvironment(Environment[ChatAction, ChatObservation, ChatState]):
    """A conversation with a task that scores the agent's replies.

    Args:
        task: a built-in task (``"arithmetic"``, ``"constrained"``) or ``"module:Class"``
            of a :class:`~gym_openenv.servers.chat.server.tasks.ChatTask` subclass.
        task_kwargs: keyword arguments for the task class.
        max_turns: replies per episode before truncation.
        tokenizer_path: a ``tokenizer.json`` or a directory holding one (default: the shipped BPE).
        max_reply_tokens: longest reply (the action's token box size).
        max_context_tokens: how much of the conversation the observation holds.
    """

    action_type = ChatAction
    observation_type = ChatObservation
    state_type = ChatState

    def __init__(
        self,
        task: str = "arithmetic",
        task_kwargs: Mapping[str, Any] | None = None,
        max_turns: int = 10,
        tokenizer_path: str | None = None,
        max_reply_tokens: int = 32,
        max_context_tokens: int = 256,
    ):
        for name, value in (("max_turns", max_turns), ("max_reply_tokens", max_reply_tokens),
                            ("max_context_tokens", max_context_tokens)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name}: {value} must be at least 1")
        self.task_name = task
        self.task = load_task(task, task_kwargs)
        self.tokenizer = ChatTokenizer(tokenizer_path)
        self.max_turns = max_turns
        self.max_reply_tokens = max_reply_tokens
        self.max_context_tokens = max_context_tokens
        self._rng = np.random.default_rng()
        self._ids: list[int] = []
        self._turn = 0
        self._over = True
        self._state = ChatState(task=task)

    def field_spaces(self) -> FieldSpaces:
        top = self.tokenizer.vocab_size - 1
        return {
            "action": {
                "tokens": Box(0, top, (self.max_reply_tokens,), np.int64),
                "length": Discrete(self.max_reply_tokens + 1),
            },
            "observation": {
                "tokens": Box(0, top, (self.max_context_tokens,), np.int64),
                "length": Discrete(self.max_context_tokens + 1),
            },
        }

    def metadata(self) -> EnvironmentMetadata:
        return replace(
            super().metadata(),
            extra={
                "task": self.task_name,
                "vocab_size": self.tokenizer.vocab_size,
                "tokenizer_path": str(self.tokenizer.path),
                "pad_id": self.tokenizer.pad_id,
            },
        )

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> ChatObservation:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        message = self.task.reset(self._rng)
        self._ids = self.tokenizer.user_turn(message)
        self._turn = 0
        self._over = False
        self._state = ChatState(
            episode_id=episode_id or uuid.uuid4().hex,
            task=self.task_name,
            messages=[{"role": "user", "content": message}],
        )
        return self._observation(message=message, reply=None, task_info={"question": self.task.info()}, reward=None)

    def step(self, action: ChatAction) -> ChatObservation:
        if self._over:
            raise ValueError("step: the episode is over; call reset() first")
        reply_ids = self._reply_ids(action)
        reply = self.tokenizer.decode(reply_ids)
        result: TaskReply = self.task.score(reply)
        self._turn += 1
        self._state.step_count += 1
        self._state.messages.append({"role": "assistant", "content": reply})
        self._ids += reply_ids + self.tokenizer.end_of_reply()

        truncated = not result.done and self._turn >= self.max_turns
        self._over = result.done or truncated
        message = None
        if not self._over:
            if result.message is None:
                raise ValueError(f"task: {self.task_name!r} returned no message although it is not done")
            message = result.message
            self._ids += self.tokenizer.user_turn(message)
            self._state.messages.append({"role": "user", "content": message})
        return self._observation(
            message=message,
            reply=reply,
            task_info={"question": {} if self._over else self.task.info(), "scored": result.info},
            reward=float(result.reward),
            done=self._over,
            truncated=truncated,
        )

    def _reply_ids(self, action: ChatAction) -> list[int]:
        tokens = np.asarray(action.tokens).reshape(-1)
        if tokens.size and not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens: expected integer token ids, got dtype {tokens.dtype}")
        length = tokens.size if action.length is None else int(action.length)
        if not 0 <= length <= tokens.size:
            raise ValueError(f"length: {length} is outside [0, {tokens.size}] (the number of tokens given)")
        if length > self.max_reply_tokens:
            raise ValueError(f"tokens: the reply has {length} tokens, more than max_reply_tokens={self.max_reply_tokens}")
        ids = tokens[:length].astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.tokenizer.vocab_size):
            raise ValueError(f"tokens: ids must be in [0, {self.tokenizer.vocab_size}), got {ids.tolist()}")
        return ids.tolist()

    def _observation(
        self, message: str | None, reply: str | None, task_info: dict[str, Any], reward: float | None,
        done: bool = False, truncated: bool = False,
    ) -> ChatObservation:  # fmt: skip
        context = self._ids[-self.max_context_tokens :]
        tokens = np.full(self.max_context_tokens, self.tokenizer.pad_id, dtype=np.int64)
        tokens[: len(context)] = context
        return ChatObservation(
            tokens=tokens,
            length=len(context),
            text=self.tokenizer.decode(self._ids, skip_special_tokens=False),
            message=message,
            reply=reply,
            turn=self._turn,
            task_info=dict(task_info),
            messages=[dict(m) for m in self._state.messages],
            reward=reward,
            done=done,
            truncated=truncated,
        )

    @property
    def state(self) -> ChatState:
        return self._state
