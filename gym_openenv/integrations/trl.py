"""Environment sessions as reward functions for TRL's ``GRPOTrainer``.

GRPO samples several completions per prompt and needs a reward for each.
Here a chat-style environment (``openenv/chat-v0`` or any environment with a
``{"tokens", "length"}`` action and its conversation ``text`` in ``info``)
gives them: every prompt is the first observation of a session reset with a
known seed, and a completion is scored by resetting a session with that seed
and stepping it with the completion's tokens. With a vector environment,
each batch of completions is scored in one batched reset and one batched step.

This module imports neither TRL nor torch.

Example (``model`` and the trainer's other arguments are yours)::

    import gymnasium as gym, gym_openenv
    from gym_openenv.integrations.trl import EnvRewardFunction, prompt_dataset
    envs = gym.make_vec("openenv/chat-v0", num_envs=8, task="arithmetic")
    rows = prompt_dataset(envs, seeds=range(256))                    # [{"prompt": ..., "seed": ...}]
    reward = EnvRewardFunction(envs)
    trainer = GRPOTrainer(model, reward_funcs=[reward], train_dataset=Dataset.from_list(rows), args=...)

By default completions are scored by their token ids (TRL's
``completion_ids``), which assumes the policy uses the environment's
tokenizer; pass ``encode=`` (text -> ids in the environment's vocabulary)
when it does not.

MCP tool environments (:class:`gym_openenv.tools.ToolEnv`, e.g.
``openenv/calculator-v0``, or ``openenv/remote-v0`` on any OpenEnv tool
server) work the same way: the prompt is the first observation's text, and a
completion is scored by replaying its tool calls in a session reset with the
prompt's seed; its reward is the sum of the calls' rewards. Calls are JSON
objects ``{"name": ..., "arguments": {...}}`` in the completion, bare or in
``<tool_call>`` tags (:func:`parse_tool_calls`)::

    env = gym.make("openenv/calculator-v0")
    rows = prompt_dataset(env, seeds=range(256))             # prompts: the tasks
    reward = EnvRewardFunction(env)                          # a completion that submits the right answer scores 1.0
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["EnvRewardFunction", "parse_tool_calls", "prompt_dataset"]

Encode = Callable[[str], Sequence[int]]
ToolCall = tuple[str, dict[str, Any]]


def _is_vector(env: Any) -> bool:
    return isinstance(env, gym.vector.VectorEnv)


def _texts(obs: Any, info: dict[str, Any], count: int, text_key: str) -> list[str]:
    """The conversation text: ``info[text_key]``, else a text observation (a tool environment's task)."""
    if text_key in info:
        value = info[text_key]
    elif isinstance(obs, str) or (isinstance(obs, (tuple, list)) and obs and all(isinstance(o, str) for o in obs)):
        value = obs
    else:
        raise ValueError(f"text_key: the environment's info has no {text_key!r} (keys: {sorted(info)}) and its observation is not text")
    return [str(value)] if count == 1 and isinstance(value, str) else [str(v) for v in value]


def _tool_sessions(env: Any) -> list[Any] | None:
    """The tool-environment sessions of ``env`` (one, or each of a :class:`~gym_openenv.tools.ToolVectorEnv`), else None."""
    from gym_openenv.tools import ToolEnv, ToolVectorEnv

    if isinstance(env, ToolVectorEnv):
        return [e.unwrapped for e in env.envs]
    if not _is_vector(env) and isinstance(env.unwrapped, ToolEnv):
        return [env.unwrapped]
    return None


_JSON = json.JSONDecoder()


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The tool calls written in ``text``, in order: JSON objects with ``name`` (or
    ``tool``) and ``arguments`` (an object, or a JSON string of one, as OpenAI
    writes it), bare or inside ``<tool_call>...</tool_call>`` tags (the Hermes and
    Qwen chat-template format). Anything else in the text is ignored.

    Example:
        >>> parse_tool_calls('Let me add. <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>')
        [('add', {'a': 1, 'b': 2})]
    """
    calls: list[ToolCall] = []
    start = text.find("{")
    while start != -1:
        try:
            value, end = _JSON.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            name, arguments = value.get("name", value.get("tool")), value.get("arguments", {})
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    arguments = None
            if isinstance(name, str) and isinstance(arguments, dict):
                calls.append((name, arguments))
        start = text.find("{", end)
    return calls


def prompt_dataset(
    env: gym.Env | gym.vector.VectorEnv, seeds: Iterable[int], text_key: str = "text"
) -> list[dict[str, Any]]:
    """Rows ``{"prompt": first observation's text, "seed": seed}``, one per seed,
    for ``datasets.Dataset.from_list``. TRL passes the ``seed`` column back to
    the reward function, which replays the session from it."""
    seeds = [int(s) for s in seeds]
    rows: list[dict[str, Any]] = []
    if not _is_vector(env):
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            rows.append({"prompt": _texts(obs, info, 1, text_key)[0], "seed": seed})
        return rows
    n = env.num_envs
    for start in range(0, len(seeds), n):
        chunk = seeds[start : start + n]
        padded = chunk + [chunk[-1]] * (n - len(chunk))
        obs, info = env.reset(seed=padded)
        texts = _texts(obs, info, n, text_key)
        rows += [{"prompt": text, "seed": seed} for text, seed in zip(texts, chunk)]
    return rows


class EnvRewardFunction:
    """A ``reward_funcs`` entry for ``GRPOTrainer``: ``(prompts, completions, **kwargs) -> list[float]``.

    Args:
        env: a single environment or a vector environment (one batched step
            per ``num_envs`` completions) with a ``Dict(tokens=Box, length=Discrete)``
            action space and the conversation's text in ``info[text_key]``;
            or a tool environment (:class:`~gym_openenv.tools.ToolEnv` or
            :class:`~gym_openenv.tools.ToolVectorEnv`, whose sessions take
            completions in turn), which scores the completion's tool calls.
        encode: text -> token ids in the environment's vocabulary; when None,
            TRL's ``completion_ids`` are used as they are (not used for tool environments).
        seed_key: the dataset column holding each prompt's reset seed.
        text_key: the ``info`` key holding the conversation text (else the text
            observation), checked against the prompt so a reward never scores the wrong question.
        name: what TRL logs the reward as.
        parse_calls: completion text -> tool calls, for tool environments.
        max_calls: tool calls replayed per completion at most; the episode's end stops them sooner.

    Completions longer than the action's token box are cut to fit.
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        encode: Encode | None = None,
        seed_key: str = "seed",
        text_key: str = "text",
        name: str = "env_reward",
        parse_calls: Callable[[str], list[ToolCall]] = parse_tool_calls,
        max_calls: int = 16,
    ):
        self.env = env
        self.encode = encode
        self.seed_key = seed_key
        self.text_key = text_key
        self.parse_calls = parse_calls
        self.max_calls = max_calls
        self.__name__ = name  # TRL names reward columns after __name__
        self.tool_sessions = _tool_sessions(env)
        if self.tool_sessions is not None:
            return
        space = env.single_action_space if _is_vector(env) else env.action_space
        if not (isinstance(space, gym.spaces.Dict) and {"tokens", "length"} <= set(space.spaces)):
            raise ValueError(f"env: expected a tool environment or a Dict action space with 'tokens' and 'length', got {space}")
        self.max_tokens = int(space["tokens"].shape[0])
        self.token_dtype = space["tokens"].dtype

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if self.seed_key not in kwargs:
            raise ValueError(
                f"seed_key: no {self.seed_key!r} column reached the reward function; "
                "build the dataset with prompt_dataset()"
            )
        seeds = [int(s) for s in kwargs[self.seed_key]]
        if not len(prompts) == len(completions) == len(seeds):
            raise ValueError(f"got {len(prompts)} prompts, {len(completions)} completions and {len(seeds)} seeds")
        prompt_texts = [_prompt_text(p) for p in prompts]
        if self.tool_sessions is not None:
            sessions = self.tool_sessions
            return [
                self._score_tool_calls(sessions[i % len(sessions)], seed, prompt, _completion_text(completion))
                for i, (seed, prompt, completion) in enumerate(zip(seeds, prompt_texts, completions))
            ]
        ids = self._completion_ids(completions, completion_ids)
        if not _is_vector(self.env):
            return [self._score_one(s, p, i) for s, p, i in zip(seeds, prompt_texts, ids)]
        rewards: list[float] = []
        n = self.env.num_envs
        for start in range(0, len(seeds), n):
            stop = start + n
            rewards += self._score_batch(seeds[start:stop], prompt_texts[start:stop], ids[start:stop])
        return rewards

    def _completion_ids(self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None) -> list[list[int]]:
        if self.encode is not None:
            return [list(self.encode(_completion_text(c)))[: self.max_tokens] for c in completions]
        if completion_ids is None:
            raise ValueError("encode: pass encode= (text -> token ids) when completion_ids are not given")
        return [[int(t) for t in ids][: self.max_tokens] for ids in completion_ids]

    def _action(self, ids: list[int]) -> dict[str, Any]:
        tokens = np.zeros(self.max_tokens, dtype=self.token_dtype)
        tokens[: len(ids)] = ids
        return {"tokens": tokens, "length": len(ids)}

    def _check_prompt(self, seed: int, prompt: str | None, text: str) -> None:
        if prompt is not None and prompt != text:
            raise ValueError(f"seed {seed}: the session starts with {text!r}, not with the prompt {prompt!r}")

    def _score_tool_calls(self, session: Any, seed: int, prompt: str | None, text: str) -> float:
        obs, info = session.reset(seed=seed)
        self._check_prompt(seed, prompt, _texts(obs, info, 1, self.text_key)[0])
        total = 0.0
        for name, arguments in self.parse_calls(text)[: self.max_calls]:
            _, reward, terminated, truncated, _ = session.call_tool(name, arguments)
            total += reward
            if terminated or truncated:
                break
        return total

    def _score_one(self, seed: int, prompt: str | None, ids: list[int]) -> float:
        obs, info = self.env.reset(seed=seed)
        self._check_prompt(seed, prompt, _texts(obs, info, 1, self.text_key)[0])
        _, reward, *_ = self.env.step(self._action(ids))
        return float(reward)

    def _score_batch(self, seeds: list[int], prompts: list[str | None], ids: list[list[int]]) -> list[float]:
        n, used = self.env.num_envs, len(seeds)
        # A short last batch fills the spare sessions with a copy of its last item.
        seeds = seeds + [seeds[-1]] * (n - used)
        ids = ids + [ids[-1]] * (n - used)
        obs, info = self.env.reset(seed=seeds)
        for seed, prompt, text in zip(seeds, prompts, _texts(obs, info, n, self.text_key)):
            self._check_prompt(seed, prompt, text)
        actions = [self._action(i) for i in ids]
        batched = {
            "tokens": np.stack([a["tokens"] for a in actions]),
            "length": np.array([a["length"] for a in actions], dtype=np.int64),
        }
        _, rewards, *_ = self.env.step(batched)
        return [float(r) for r in np.asarray(rewards)[:used]]


def _prompt_text(prompt: Any) -> str | None:
    # Plain-text prompts are checked against the session; conversational ones
    # (lists of messages) are rendered by the policy's chat template, which the
    # environment cannot reproduce, so they are trusted to the seed.
    return prompt if isinstance(prompt, str) else None


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise ValueError(f"completions: expected text or a list of messages, got {completion!r}")
