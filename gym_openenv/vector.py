"""``OpenEnvVectorEnv``: one ``gymnasium.vector.VectorEnv`` over many remote sessions.

``gym.make_vec("openenv/<name>-v0", num_envs=N)`` picks it (it is every id's
``vector_entry_point``). Sessions spread over several server processes (one
per core by default); each server's sessions share one connection and one
frame resets and steps them all (the batch protocol: autoreset rides in the
step request), falling back to one OpenEnv session per env against servers
that do not offer it. One event loop, on a background thread, drives every
connection: no thread or process per env.

The class keeps the gymnasium API and its async state (``AsyncState``,
``AlreadyPendingCallError``, ``NoAsyncCallError``); the transport is
:mod:`gym_openenv.session_pool`, crash and error recovery
:mod:`gym_openenv.recovery`, batch assembly :mod:`gym_openenv.batching`.

Example:
    >>> import gymnasium as gym
    >>> envs = gym.make_vec("openenv/echo-v0", num_envs=8)
    >>> obs, info = envs.reset(seed=0)
    >>> envs.send(np.array(["a"] * 4), env_ids=np.arange(4))
    >>> obs, rew, term, trunc, info = envs.recv()
    >>> obs, info["env_id"]
    (('a', 'a', 'a', 'a'), array([0, 1, 2, 3]))
    >>> envs.close()

    ``reset(seed=0)`` gives env i the seed 0 + i; ``send``/``recv`` overlap stepping
    with the learner's work, envpool-style (``info["env_id"]`` says whose rows came back).
"""

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from gymnasium.error import AlreadyPendingCallError, NoAsyncCallError
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.async_vector_env import AsyncState

from gym_openenv.client import DEFAULT_TIMEOUT, MAX_MESSAGE_BYTES, LoopThread
from gym_openenv.elastic import ElasticRecovery
from gym_openenv.env import resolve_server
from gym_openenv.errors import RequestTimeout
from gym_openenv.providers import Provider
from gym_openenv.schema import EnvSchema
from gym_openenv.batching import action_columns, assemble, batched_space, env_index, flag_rows, same_step_rows
from gym_openenv.recovery import Recovered
from gym_openenv.session_pool import Chunk, Sent, SessionPool, ServerFailure

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
            Where the provider sets ``replacement_timeout`` (Ray does), envs of a server whose
            replacement is slower than that move to the surviving servers, and back once it
            is up (:mod:`gym_openenv.elastic`); :meth:`add_servers` and :meth:`remove_servers`
            grow and shrink the set of servers.
        shared_memory: let servers on this machine hand large array observations over in
            shared memory instead of the socket (falls back by itself where they cannot).
        direct: talk to servers on this machine over their direct sockets, from the calling
            thread (:mod:`gym_openenv.direct`); ``/ws/batch`` where out of reach.
        timeout: seconds to wait for any reply.
        max_message_bytes: the largest reply frame to accept from a server (default 64 MiB);
            a step whose reply would be bigger raises ``ServerError`` ``MESSAGE_TOO_LARGE``.
        action_space, observation_space, hints: one env's spaces instead of the derived ones
            (see :class:`~gym_openenv.env.OpenEnvEnv`).
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
        direct: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        token: str | None = None,
        action_space: Any = None,
        observation_space: Any = None,
        hints: bool = True,
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
        self._start_server = None  # starts one more server like ours (None: url=/urls= given)
        try:
            server_urls = self._start_servers(environment, env_kwargs, url, urls, num_servers, provider, provider_options, token)
            token = token or next((p.token for p in self._providers if getattr(p, "token", None)), None) or os.environ.get("OPENENV_TOKEN")
            schema = self._loop.run(
                EnvSchema.fetch(server_urls[0], token, action_space=action_space, observation_space=observation_space, hints=hints), timeout
            )
            self._schema = schema
            self.single_action_space = schema.action.space
            self.single_observation_space = schema.observation.space
            self.action_space = batched_space(self.single_action_space, num_envs)
            self.observation_space = batched_space(self.single_observation_space, num_envs)
            self._pool = SessionPool(
                server_urls, num_envs, protocol=protocol, timeout=timeout, token=token,
                shared_memory=shared_memory, max_message_bytes=max_message_bytes, direct=direct,
            )
            self._loop.run(self._pool.open(), timeout)
            self._recovery = ElasticRecovery(
                self._pool, self._provider_of_url, on_server_failure, providers=self._providers, start_server=self._start_server
            )
        except BaseException:
            self.close()
            raise
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._episode_steps = np.zeros(num_envs, dtype=np.int64)
        self._every_env = np.arange(num_envs)  # env_ids of a send to all envs (never handed out: recv copies it)
        #: per send not yet received: (its env ids, their index into per-env arrays, what to wait on, envs reset in it)
        self._pending: deque[tuple[np.ndarray, slice | np.ndarray, Future | Sent, np.ndarray]] = deque()
        self._lost = np.zeros(num_envs, dtype=bool)  # sessions replaced after a crash, not yet reset
        self._state = AsyncState.DEFAULT

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

        def start(_: int = 0) -> tuple[str, Provider]:
            return resolve_server(environment, env_kwargs, None, provider, options)

        self._start_server = start

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
            raise AlreadyPendingCallError("reset() called with steps still pending; recv() them first", self._state.value)
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seed)}")
            seeds = list(seed)
        env_ids = np.arange(self.num_envs)
        if self._recovery.replacement_ready:  # every env starts over anyway: no flags needed
            self._loop.run(self._recovery.rebalance())
        # No outer bound: every request inside is bounded by `timeout`, and recovery by the provider's.
        outcome = self._reset_now(env_ids, seeds, options)
        self._needs_reset[:] = False
        self._lost[:] = False  # every env was just reset
        self._episode_steps[:] = 0
        obs, _, _, _, info = assemble(self._schema.observation, outcome.chunks, env_ids, self.num_envs)
        _flag(info, env_ids, outcome)
        return obs, info

    async def _reset_and_recover(self, env_ids: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None = None) -> Recovered:
        return await self._recovery.recover(await self._pool.reset(env_ids, seeds, options))

    def _reset_now(self, env_ids: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None = None) -> Recovered:
        if self._pool.in_callers_thread:  # from this thread: no event loop unless something failed
            return self._recovered(self._pool.receive(self._pool.send_reset(env_ids, seeds, options)))
        return self._loop.run(self._reset_and_recover(env_ids, seeds, options))

    def _recovered(self, results: list[Chunk | ServerFailure]) -> Recovered:
        outcome = self._recovery.nothing_to_recover(results)
        return outcome if outcome is not None else self._loop.run(self._recovery.recover(results))

    def _mark_replaced(self, outcome: Recovered) -> None:
        # Envs on a replaced server that were not in this call: their next step resets them.
        self._needs_reset[outcome.replaced] = True
        self._lost[outcome.replaced] = True

    def _start_over(self, envs: np.ndarray) -> None:
        # Envs moved to fresh sessions: their next step resets them, flagged openenv_restarted.
        self._needs_reset[envs] = True
        self._lost[envs] = True

    def add_servers(self, count: int) -> None:
        """Start ``count`` more servers (same provider and options) and spread the envs evenly.

        The fewest envs needed move to the new servers; they start new episodes at their
        next step, flagged in ``info["openenv_restarted"]``. The others are not touched.
        """
        if self._pending:
            raise AlreadyPendingCallError("add_servers() called with steps pending; recv() them first", self._state.value)
        self._start_over(self._loop.run(self._recovery.add_servers(count)))

    def remove_servers(self, count: int) -> None:
        """Move the envs of the ``count`` most recently added servers to the others, then stop them.

        Moved envs start new episodes at their next step, flagged in ``info["openenv_restarted"]``.
        """
        if self._pending:
            raise AlreadyPendingCallError("remove_servers() called with steps pending; recv() them first", self._state.value)
        self._start_over(self._loop.run(self._recovery.remove_servers(count)))

    def step(self, actions: Any):
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        if self._pending:
            raise AlreadyPendingCallError("step_async() called while a step is pending; call step_wait() first", self._state.value)
        self.send(actions)

    def step_wait(self, timeout: float | None = None):
        if not self._pending:
            raise NoAsyncCallError("step_wait() called with no step pending; call step_async() first", AsyncState.WAITING_STEP.value)
        return self._collect(timeout)[1]

    def send(self, actions: Any, env_ids: np.ndarray | list[int] | None = None) -> None:
        """Start stepping ``env_ids`` (default: all) with ``actions``; :meth:`recv` collects.

        Envs whose episode ended at their last step are reset instead
        (``NEXT_STEP``), in the same request as the others' steps.

        Raises:
            ValueError: the batch does not fit the action space (checked before sending),
                or an env in ``env_ids`` has a step pending.
        """
        given = env_ids
        if env_ids is None:
            env_ids = self._every_env
        else:
            env_ids = np.array(env_ids, dtype=np.int64)  # ours: the caller may change theirs meanwhile
            if len(np.unique(env_ids)) != len(env_ids) or (len(env_ids) and (env_ids.min() < 0 or env_ids.max() >= self.num_envs)):
                raise ValueError(f"env_ids must be distinct indices in [0, {self.num_envs}), got {env_ids.tolist()}")
        ix = slice(None) if given is None else env_index(env_ids, self.num_envs)  # for the per-env arrays
        if self._pending:  # envs are busy only while a call is pending
            busy = env_ids[np.isin(env_ids, np.concatenate([pending[0] for pending in self._pending]))]
            if len(busy):
                raise ValueError(f"envs {busy.tolist()} already have a step pending; recv() first")
        if not self._pending and self._recovery.replacement_ready:
            self._start_over(self._loop.run(self._recovery.rebalance()))
        columns = action_columns(self._schema.action, actions, len(env_ids))
        needs_reset = self._needs_reset[ix]
        if needs_reset.any():
            reset_ids, step_ids = env_ids[needs_reset], env_ids[~needs_reset]
            columns = {k: _take(col, np.flatnonzero(~needs_reset)) for k, col in columns.items()}
        else:  # no episode ended last step: every env steps
            reset_ids, step_ids = env_ids[:0], env_ids
        same_step = self.autoreset_mode is AutoresetMode.SAME_STEP
        if self._pool.in_callers_thread:  # sent from this thread; recv() collects the replies in it
            waiting: Future | Sent = self._pool.send_step(step_ids, columns, reset_ids, autoreset=same_step)
        else:
            waiting = self._loop.submit(self._step_and_recover(step_ids, columns, reset_ids, same_step))
        self._pending.append((env_ids, ix, waiting, reset_ids))
        self._state = AsyncState.WAITING_STEP

    async def _step_and_recover(self, step_ids: np.ndarray, columns: dict[str, Any], reset_ids: np.ndarray, same_step: bool) -> Recovered:
        return await self._recovery.recover(await self._pool.step(step_ids, columns, reset_ids, autoreset=same_step))

    def recv(self, timeout: float | None = None):
        """Results of the oldest :meth:`send`, with ``info["env_id"]``.

        ``timeout``: give up waiting after this many seconds (:class:`~gym_openenv.RequestTimeout`).
        Without it the wait is bounded all the same: a server that does not answer
        within the env's ``timeout`` counts as failed (restarted, or raised).
        """
        if not self._pending:
            raise NoAsyncCallError("recv() called with nothing sent", AsyncState.WAITING_STEP.value)
        env_ids, results = self._collect(timeout)
        results[4]["env_id"] = env_ids.copy() if env_ids is self._every_env else env_ids
        return results

    def _collect(self, timeout: float | None):
        """The oldest send's env ids and its ``(obs, rewards, terminated, truncated, info)``."""
        env_ids, ix, waiting, reset_ids = self._pending.popleft()
        if not self._pending:
            self._state = AsyncState.DEFAULT
        try:
            if isinstance(waiting, Sent):
                results = self._pool.receive(waiting, timeout)
                if timeout is not None and any(isinstance(r, ServerFailure) and isinstance(r.error, RequestTimeout) for r in results):
                    raise TimeoutError  # the caller's own bound: raised, as on the event loop's path
                outcome = self._recovered(results)
            else:
                outcome = waiting.result(timeout)  # by default bounded inside: each request by `timeout`
        except RequestTimeout:
            raise  # a server's own timeout, raised by recovery (on_server_failure="raise"): its message names it
        except TimeoutError:  # the caller's bound
            raise RequestTimeout(f"no step result within {timeout}s") from None
        if len(outcome.replaced):
            self._mark_replaced(outcome)
        restarted = outcome.restarted
        if len(reset_ids):
            restarted = restarted + [int(e) for e in reset_ids if self._lost[e]]
            self._lost[reset_ids] = False
        main = [c for c in outcome.chunks if not c.autoreset]
        every_env = isinstance(ix, slice)  # every env, in order
        obs, rewards, terminated, truncated, info = assemble(self._schema.observation, main, None if every_env else env_ids, self.num_envs)
        started_over = [*reset_ids.tolist(), *restarted, *outcome.errors]
        was_reset = np.isin(env_ids, started_over) if started_over else None
        if was_reset is not None:  # a reset row is the first observation of a new episode: no reward, not done
            rewards[was_reset], terminated[was_reset], truncated[was_reset] = 0.0, False, False
        if self.max_episode_steps is not None:  # steps are counted only for this
            self._count_steps(ix, was_reset, terminated, truncated)
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            self._needs_reset[ix] = False  # the envs reset in this send; those done now are reset right away
            done = terminated | truncated
            if done.any():
                obs, info = self._reset_done_now(env_ids, done, obs, info, [c for c in outcome.chunks if c.autoreset])
                self._episode_steps[env_ids[done]] = 0
        elif every_env:  # NEXT_STEP: an env whose episode ended is reset at its next send
            np.logical_or(terminated, truncated, out=self._needs_reset[ix])
        else:
            self._needs_reset[ix] = terminated | truncated
        _flag(info, env_ids, outcome, restarted)
        return env_ids, (obs, rewards, terminated, truncated, info)

    def _count_steps(self, ix: slice | np.ndarray, was_reset: np.ndarray | None, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """``max_episode_steps``: count this step, truncate the episodes that reached it."""
        episode_steps = self._episode_steps[ix] + 1
        reached = episode_steps >= self.max_episode_steps
        if was_reset is not None:
            episode_steps[was_reset] = 0
            reached &= ~was_reset
        truncated |= reached & ~terminated
        self._episode_steps[ix] = episode_steps

    def _reset_done_now(self, env_ids: np.ndarray, done: np.ndarray, obs: Any, info: dict[str, Any], autoreset: list[Chunk]):
        """SAME_STEP: the servers reset the envs whose episode ended in the step request
        itself; only those the client ended (``max_episode_steps``) take a round trip."""
        done_ids = env_ids[done]
        covered = np.concatenate([c.indices for c in autoreset]) if autoreset else np.zeros(0, dtype=np.int64)
        missing = np.setdiff1d(done_ids, covered)
        if len(missing):
            outcome = self._reset_now(missing, [None] * len(missing))
            self._mark_replaced(outcome)
            autoreset = autoreset + outcome.chunks
        new_obs, _, _, _, new_info = assemble(self._schema.observation, autoreset, done_ids, self.num_envs)
        return same_step_rows(obs, info, done, new_obs, new_info)

    # lifecycle

    def close_extras(self, **kwargs: Any) -> None:
        if getattr(self, "_recovery", None) is not None:
            self._recovery.close()  # replacements still starting
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


def _flag(info: dict[str, Any], env_ids: np.ndarray, outcome: Recovered, restarted: list[int] | None = None) -> None:
    """Envs that start over because their call or server failed: ``openenv_error`` (the
    message) and ``openenv_restarted`` (their server was replaced), with gymnasium masks."""
    restarted = outcome.restarted if restarted is None else restarted
    if restarted:
        info["openenv_restarted"] = np.isin(env_ids, restarted)
        info["_openenv_restarted"] = np.ones(len(env_ids), dtype=bool)
    if outcome.errors:
        flag_rows(info, "openenv_error", env_ids, outcome.errors)


def _take(column: Any, positions: np.ndarray) -> Any:
    if isinstance(column, np.ndarray):
        return column[positions]
    return [column[p] for p in positions]
