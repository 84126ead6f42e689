"""``OpenEnvVectorEnv``: one ``gymnasium.vector.VectorEnv`` over many remote sessions.

``gym.make_vec("openenv/<name>-v0", num_envs=N)`` picks it (it is every id's
``vector_entry_point``). Sessions spread over several server processes (one
per core by default); each server's sessions share one connection and one
frame steps them all (the batch protocol), falling back to one OpenEnv
session per env against servers that do not offer it. One event loop, on a
background thread, drives every connection: no thread or process per env.

Example:
    >>> envs = gym.make_vec("openenv/echo-v0", num_envs=8)       # doctest: +SKIP
    >>> obs, info = envs.reset(seed=0)                           # env i gets seed 0 + i
    >>> envs.send(np.array(["a"] * 4), env_ids=np.arange(4))     # envpool-style overlap
    >>> obs, rew, term, trunc, info = envs.recv()                # info["env_id"] says whose
"""

import asyncio
import functools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gym_openenv.client import DEFAULT_TIMEOUT, LoopThread
from gym_openenv.env import resolve_server
from gym_openenv.errors import RequestTimeout
from gym_openenv.providers import Provider
from gym_openenv.schema import EnvSchema
from gym_openenv.recovery import Recovered, Recovery
from gym_openenv.session_pool import Chunk, SessionPool
from gym_openenv.spaces import FieldSpec, describe, from_wire, text_contains

__all__ = ["OpenEnvVectorEnv"]


class OpenEnvVectorEnv(VectorEnv):
    """``num_envs`` remote sessions stepped as one batch.

    Args:
        environment: the Environment class, ``"module:Class"`` (set by the registry).
        num_envs: number of sessions.
        url / urls: use running servers instead of starting them.
        num_servers: server processes to start (default: one per core, at most ``num_envs``).
        provider, provider_options: where to start them (see :class:`~gym_openenv.env.OpenEnvEnv`).
        autoreset_mode: gymnasium's ``AutoresetMode.NEXT_STEP`` (default) or ``SAME_STEP``.
        max_episode_steps: truncate episodes after this many steps (client side).
        protocol: ``"auto"`` (batched binary where the server offers it), ``"batch"`` or ``"openenv"``.
        on_server_failure: ``"restart"`` (default): a server that dies is restarted (or, if
            not ours, reconnected), its envs start new episodes flagged in
            ``info["openenv_restarted"]``; ``"raise"``: raise :class:`~gym_openenv.ConnectionLost`.
        shared_memory: let servers on this machine hand large array observations over in
            shared memory instead of the socket (falls back by itself where they cannot).
        timeout: seconds to wait for any reply.
        **env_kwargs: arguments for the environment.
    """

    def __init__(
        self,
        environment: str | None = None,
        num_envs: int = 1,
        *,
        url: str | None = None,
        urls: list[str] | None = None,
        num_servers: int | None = None,
        provider: "str | Provider | None" = None,
        provider_options: dict[str, Any] | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        protocol: str = "auto",
        on_server_failure: str = "restart",
        shared_memory: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        **env_kwargs: Any,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode {self.autoreset_mode} is not supported; use NEXT_STEP or SAME_STEP")
        if on_server_failure not in ("restart", "raise"):
            raise ValueError(f"on_server_failure must be 'restart' or 'raise', got {on_server_failure!r}")
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.timeout = timeout
        self.metadata = {"autoreset_mode": self.autoreset_mode, "render_modes": []}
        self._loop = LoopThread.shared()
        self._providers: list[Provider] = []
        self._provider_of_url: dict[str, Provider] = {}
        self._pool: SessionPool | None = None
        try:
            server_urls = self._start_servers(environment, env_kwargs, url, urls, num_servers, provider, provider_options, token)
            token = token or next((p.token for p in self._providers if getattr(p, "token", None)), None) or os.environ.get("OPENENV_TOKEN")
            schema = self._loop.run(EnvSchema.fetch(server_urls[0], token), timeout)
            self._schema = schema
            self.single_action_space = schema.action.space
            self.single_observation_space = schema.observation.space
            self.action_space = batch_space(self.single_action_space, num_envs)
            self.observation_space = batch_space(self.single_observation_space, num_envs)
            arrays = {
                f.name: (f.space.dtype.str, f.space.shape)
                for f in schema.observation.space_fields
                if isinstance(f.space, spaces.Box) and f.space.dtype.itemsize * int(np.prod(f.space.shape)) >= 4096
            } if shared_memory else {}  # big arrays only: for small ones the frame is cheaper
            self._pool = SessionPool(server_urls, num_envs, protocol=protocol, timeout=timeout, token=token, array_fields=arrays)
            self._loop.run(self._pool.open(), timeout)
            self._recovery = Recovery(self._pool, self._provider_of_url, on_server_failure)
        except BaseException:
            self.close()
            raise
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._episode_steps = np.zeros(num_envs, dtype=np.int64)
        self._pending: deque[tuple[np.ndarray, Future, np.ndarray]] = deque()
        self._busy = np.zeros(num_envs, dtype=bool)
        self._lost = np.zeros(num_envs, dtype=bool)  # sessions replaced after a crash, not yet reset

    # servers

    def _start_servers(self, environment, env_kwargs, url, urls, num_servers, provider, provider_options, token) -> list[str]:
        if url is not None or urls is not None:
            # Running servers: remote providers (retries on connect; stopping them stops nothing).
            found = []
            for u in list(urls or []) + ([url] if url else []):
                started_url, started = resolve_server(environment, env_kwargs, u, provider, provider_options, token)
                self._providers.append(started)
                self._provider_of_url[started_url] = started
                found.append(started_url)
            return found
        count = num_servers or min(os.cpu_count() or 1, self.num_envs)
        per_server = -(-self.num_envs // count)
        options = dict(provider_options or {})
        if not isinstance(provider, Provider):  # every provider that starts a server takes server_args
            options.setdefault("server_args", ["--max-sessions", str(max(256, per_server))])

        def start(_: int) -> tuple[str, Provider]:
            return resolve_server(environment, env_kwargs, None, provider, options)

        with ThreadPoolExecutor(count) as pool:  # servers boot in parallel
            futures = [pool.submit(start, k) for k in range(count)]
        failures = [f.exception() for f in futures if f.exception() is not None]
        if failures:
            for future in futures:
                if future.exception() is None:
                    future.result()[1].stop()  # never leave some of the servers running
            raise failures[0]
        started = [f.result() for f in futures]  # in server order: _providers[k] serves the k-th block
        for url, server in started:
            self._providers.append(server)
            self._provider_of_url[url] = server
        return [url for url, _ in started]

    @property
    def batched(self) -> bool:
        """Whether every server speaks the batch protocol (else the OpenEnv fallback is in use)."""
        return self._pool.batched

    # gymnasium API

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed if isinstance(seed, int) else None)
        if self._pending:
            raise RuntimeError("reset() called with steps still pending; recv() them first")
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seed)}")
            seeds = list(seed)
        env_ids = np.arange(self.num_envs)
        outcome = self._loop.run(self._reset_and_recover(env_ids, seeds, options), self.timeout)
        self._needs_reset[:] = False
        self._lost[:] = False  # every env was just reset
        self._episode_steps[:] = 0
        obs, _, _, _, info = self._assemble(outcome.chunks, env_ids)
        if outcome.restarted:
            _flag_restarted(info, env_ids, outcome.restarted)
        return obs, info

    async def _reset_and_recover(self, env_ids: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None = None) -> Recovered:
        return await self._recovery.recover(await self._pool.reset(env_ids, seeds, options))

    def _mark_replaced(self, outcome: Recovered) -> None:
        # Envs on a replaced server that were not in this call: their next step resets them.
        self._needs_reset[outcome.replaced] = True
        self._lost[outcome.replaced] = True

    def step(self, actions: Any):
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        if self._pending:
            raise RuntimeError("step_async() called while a step is pending; call step_wait() first")
        self.send(actions)

    def step_wait(self, timeout: float | None = None):
        if not self._pending:
            raise RuntimeError("step_wait() called with no step pending; call step_async() first")
        results = self.recv(timeout)
        results[4].pop("env_id")
        return results

    def send(self, actions: Any, env_ids: np.ndarray | list[int] | None = None) -> None:
        """Start stepping ``env_ids`` (default: all) with ``actions``; :meth:`recv` collects.

        Raises:
            ValueError: the batch does not fit the action space (checked before sending),
                or an env in ``env_ids`` has a step pending.
        """
        env_ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        if len(np.unique(env_ids)) != len(env_ids) or (len(env_ids) and (env_ids.min() < 0 or env_ids.max() >= self.num_envs)):
            raise ValueError(f"env_ids must be distinct indices in [0, {self.num_envs}), got {env_ids.tolist()}")
        if self._busy[env_ids].any():
            raise ValueError(f"envs {env_ids[self._busy[env_ids]].tolist()} already have a step pending; recv() first")
        columns = _action_columns(self._schema.action.space_fields, self._schema.action.unwrapped, actions, len(env_ids))
        needs_reset = self._needs_reset[env_ids]
        reset_ids, step_ids = env_ids[needs_reset], env_ids[~needs_reset]
        step_columns = {k: _take(col, np.flatnonzero(~needs_reset)) for k, col in columns.items()}
        future = self._loop.submit(self._step_and_reset(step_ids, step_columns, reset_ids))
        self._busy[env_ids] = True
        self._pending.append((env_ids, future, reset_ids))

    async def _step_and_reset(self, step_ids: np.ndarray, columns: dict[str, Any], reset_ids: np.ndarray) -> Recovered:
        stepping = self._pool.step(step_ids, columns) if len(step_ids) else _no_chunks()
        resetting = self._pool.reset(reset_ids, [None] * len(reset_ids)) if len(reset_ids) else _no_chunks()
        stepped, reset = await asyncio.gather(stepping, resetting)
        return await self._recovery.recover(stepped + reset)

    def recv(self, timeout: float | None = None):
        """Results of the oldest :meth:`send`, with ``info["env_id"]``."""
        if not self._pending:
            raise RuntimeError("recv() called with nothing sent")
        env_ids, future, reset_ids = self._pending.popleft()
        try:
            outcome = future.result(timeout or self.timeout)
        except TimeoutError:
            raise RequestTimeout(f"no step result within {timeout or self.timeout}s") from None
        finally:
            self._busy[env_ids] = False
        self._mark_replaced(outcome)
        restarted = outcome.restarted + [int(e) for e in reset_ids if self._lost[e]]
        self._lost[reset_ids] = False
        obs, rewards, terminated, truncated, info = self._assemble(outcome.chunks, env_ids)
        was_reset = np.isin(env_ids, reset_ids) | np.isin(env_ids, restarted)
        self._episode_steps[env_ids] = np.where(was_reset, 0, self._episode_steps[env_ids] + 1)
        if self.max_episode_steps is not None:
            truncated |= (self._episode_steps[env_ids] >= self.max_episode_steps) & ~terminated & ~was_reset
        # A reset row is the first observation of a new episode: no reward, not done.
        rewards[was_reset], terminated[was_reset], truncated[was_reset] = 0.0, False, False
        done = terminated | truncated
        if self.autoreset_mode is AutoresetMode.SAME_STEP and done.any():
            obs, info = self._reset_done_now(env_ids, done, obs, info)
            self._episode_steps[env_ids[done]] = 0
        else:
            self._needs_reset[env_ids] = done
        if restarted:
            _flag_restarted(info, env_ids, restarted)
        info["env_id"] = env_ids
        return obs, rewards, terminated, truncated, info

    def _reset_done_now(self, env_ids, done, obs, info):
        done_ids = env_ids[done]
        outcome = self._loop.run(self._reset_and_recover(done_ids, [None] * len(done_ids)), self.timeout)
        self._mark_replaced(outcome)
        new_obs, _, _, _, new_info = self._assemble(outcome.chunks, done_ids)
        final_obs = np.empty(len(env_ids), dtype=object)
        final_info = np.empty(len(env_ids), dtype=object)
        rows = np.flatnonzero(done)
        for row in rows:
            final_obs[row] = _index(obs, row)
            final_info[row] = {k: v[row] for k, v in info.items() if not k.startswith("_") and info[f"_{k}"][row]}
        obs = _assign_rows(obs, rows, new_obs)
        info = _merge_info_rows(info, rows, new_info, len(env_ids))
        info["final_obs"], info["_final_obs"] = final_obs, done.copy()
        info["final_info"], info["_final_info"] = final_info, done.copy()
        return obs, info

    # results

    def _assemble(self, chunks: list[Chunk], env_ids: np.ndarray):
        m = len(env_ids)
        # Rows of the output for each env index: the identity when stepping every env in order.
        everyone = m == self.num_envs and bool((env_ids == np.arange(m)).all())
        row_of = None if everyone else {int(e): i for i, e in enumerate(env_ids)}
        fields = self._schema.observation.space_fields
        buffers = {f.name: _empty(f.space, m) for f in fields}
        rewards = np.zeros(m, dtype=np.float64)
        terminated = np.zeros(m, dtype=bool)
        truncated = np.zeros(m, dtype=bool)
        info_columns: dict[str, list] = {}
        info_rows: dict[str, list[int]] = {}
        info_field_names = [f.name for f in self._schema.observation.info_fields]
        for chunk in chunks:
            if row_of is None:
                rows = np.asarray(chunk.indices, dtype=np.int64)
            else:
                rows = np.fromiter((row_of[int(e)] for e in chunk.indices), dtype=np.int64, count=len(chunk.indices))
            for f in fields:
                _fill(f.space, buffers[f.name], rows, chunk.observation[f.name])
            rewards[rows] = [0.0 if r is None else r for r in chunk.reward]
            chunk_truncated = np.asarray(chunk.truncated, dtype=bool)
            truncated[rows] = chunk_truncated
            terminated[rows] = np.asarray(chunk.done, dtype=bool) & ~chunk_truncated
            for name in info_field_names:
                if name in chunk.observation:
                    info_columns.setdefault(name, []).extend(chunk.observation[name])
                    info_rows.setdefault(name, []).extend(rows.tolist())
            for row, meta in zip(rows.tolist(), chunk.metadata or ()):
                for key, value in meta.items():
                    info_columns.setdefault(key, []).append(value)
                    info_rows.setdefault(key, []).append(row)
        obs = {f.name: _finish(f.space, buffers[f.name]) for f in fields}
        obs = obs[fields[0].name] if self._schema.observation.unwrapped else obs
        return obs, rewards, terminated, truncated, _batched_info(info_columns, info_rows, m)

    # lifecycle

    def close_extras(self, **kwargs: Any) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                self._loop.run(pool.close(), 10)
            except Exception:  # servers already gone: nothing left to close on them
                pass
        providers, self._providers = self._providers, []
        for provider in providers:
            provider.stop()

    def __del__(self) -> None:  # safety net only; close() is the API
        for provider in getattr(self, "_providers", []):
            provider.stop()


async def _no_chunks() -> list[Chunk]:
    return []


def _flag_restarted(info: dict[str, Any], env_ids: np.ndarray, restarted: list[int]) -> None:
    flags = np.isin(env_ids, restarted)
    info["openenv_restarted"] = flags
    info["_openenv_restarted"] = np.ones(len(env_ids), dtype=bool)


def _take(column: Any, positions: np.ndarray) -> Any:
    if isinstance(column, np.ndarray):
        return column[positions]
    return [column[p] for p in positions]


# --- actions: batch -> checked columns ----------------------------------------


def _action_columns(fields: list[FieldSpec], unwrapped: bool, actions: Any, n: int) -> dict[str, Any]:
    if unwrapped:
        return {fields[0].name: _check_column(fields[0], actions, n)}
    if not isinstance(actions, dict):
        raise ValueError(f"actions must be a dict with keys {[f.name for f in fields]}, got {type(actions).__name__}")
    missing = [f.name for f in fields if f.name not in actions]
    if missing:
        raise ValueError(f"actions missing field(s) {missing}")
    return {f.name: _check_column(f, actions[f.name], n) for f in fields}


def _check_column(field: FieldSpec, values: Any, n: int) -> Any:
    space = field.space
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        array = np.asarray(values)
        expected = (n, *space.shape)
        if array.shape != expected:
            raise ValueError(f"actions for {field.name!r} must have shape {expected}, got {array.shape}")
        if isinstance(space, spaces.Discrete):
            bad = (array < space.start) | (array >= space.start + space.n) | (array != np.floor(array))
        else:
            bad = np.array([not space.contains(np.asarray(v, dtype=space.dtype)) for v in array])
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(n, -1).any(axis=1))[0])
            raise ValueError(f"action {i} for {field.name!r}: {array[i]!r} is not in {describe(space)}")
        return array.astype(space.dtype, copy=False)
    values = list(values)
    if len(values) != n:
        raise ValueError(f"expected {n} actions for {field.name!r}, got {len(values)}")
    contains = functools.partial(text_contains, space) if type(space) is spaces.Text else space.contains
    for i, v in enumerate(values):
        if not contains(v):
            raise ValueError(f"action {i} for {field.name!r}: {v!r} is not in {describe(space)}")
    return values


# --- observations: columns -> batched values ----------------------------------


def _empty(space: spaces.Space, m: int) -> Any:
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        return np.empty((m, *space.shape), dtype=space.dtype)
    if isinstance(space, spaces.Dict):
        return {k: _empty(s, m) for k, s in space.spaces.items()}
    return [None] * m


def _fill(space: spaces.Space, buffer: Any, rows: np.ndarray, column: Any) -> None:
    if isinstance(buffer, np.ndarray):
        if isinstance(column, list) and column and isinstance(column[0], np.ndarray):
            for row, value in zip(rows.tolist(), column):  # one copy per array, straight into place
                buffer[row] = value
        else:
            buffer[rows] = np.asarray(column, dtype=buffer.dtype).reshape((len(rows), *buffer.shape[1:]))
    elif isinstance(buffer, dict):
        for key, sub in buffer.items():
            _fill(space[key], sub, rows, [item[key] for item in column])
    elif type(space) is spaces.Text:  # strings arrive as they are
        for row, value in zip(rows.tolist(), column):
            buffer[row] = value
    else:
        for row, value in zip(rows.tolist(), column):
            buffer[row] = from_wire(space, value)


def _finish(space: spaces.Space, buffer: Any) -> Any:
    """Observations are fresh arrays each call, so they are handed out as they are."""
    if isinstance(buffer, dict):
        return {k: _finish(space[k], v) for k, v in buffer.items()}
    if isinstance(buffer, list):
        return tuple(buffer)
    return buffer


def _batched_info(columns: dict[str, list], rows: dict[str, list[int]], m: int) -> dict[str, Any]:
    """Gymnasium's batched info: one array per key plus a ``_key`` mask."""
    info: dict[str, Any] = {}
    for key, values in columns.items():
        idx = np.asarray(rows[key], dtype=np.int64)
        mask = np.zeros(m, dtype=bool)
        mask[idx] = True
        sample = values[0]
        if isinstance(sample, (bool, np.bool_)):
            array = np.zeros(m, dtype=bool)
        elif isinstance(sample, (int, np.integer)) and not isinstance(sample, bool):
            array = np.zeros(m, dtype=np.int64)
        elif isinstance(sample, (float, np.floating)):
            array = np.zeros(m, dtype=np.float64)
        else:
            array = np.empty(m, dtype=object)
        try:
            array[idx] = values
        except (TypeError, ValueError, OverflowError):  # mixed types across envs
            array = np.empty(m, dtype=object)
            for i, v in zip(idx, values):
                array[i] = v
        info[key], info[f"_{key}"] = array, mask
    return info


def _index(obs: Any, row: int) -> Any:
    if isinstance(obs, dict):
        return {k: _index(v, row) for k, v in obs.items()}
    value = obs[row]
    return value.copy() if isinstance(value, np.ndarray) else value


def _assign_rows(obs: Any, rows: np.ndarray, new: Any) -> Any:
    if isinstance(obs, dict):
        return {k: _assign_rows(v, rows, new[k]) for k, v in obs.items()}
    if isinstance(obs, tuple):
        items = list(obs)
        for j, row in enumerate(rows):
            items[row] = new[j]
        return tuple(items)
    obs[rows] = new
    return obs


def _merge_info_rows(info: dict[str, Any], rows: np.ndarray, new: dict[str, Any], m: int) -> dict[str, Any]:
    merged = dict(info)
    for key, value in new.items():
        if key.startswith("_"):
            continue
        if key not in merged:
            merged[key] = np.zeros(m, dtype=value.dtype) if value.dtype != object else np.empty(m, dtype=object)
            merged[f"_{key}"] = np.zeros(m, dtype=bool)
        merged[key][rows] = value
        merged[f"_{key}"][rows] = new[f"_{key}"]
    return merged
