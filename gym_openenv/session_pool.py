"""Many remote sessions driven as one: the transport under the vector env.

A :class:`SessionPool` holds ``num_envs`` sessions spread over one or more
servers. Where a server advertises the batch protocol, all of its sessions
share one ``/ws/batch`` connection and one frame resets and steps them
together (resets for autoreset ride in the step request); otherwise each
session is a plain OpenEnv WebSocket (the fallback for foreign servers).
Direct batch connections and plain sessions on ``ws://`` or a Unix socket are
driven from the caller's thread (:attr:`SessionPool.in_callers_thread`); the
others on the event loop.
Either way a call returns :class:`Chunk` s: the rows of one server's reply,
column by column, with the env indices they belong to and each failed row's
error, or a :class:`ServerFailure` for a server whose connection failed.
"""

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gym_openenv.blocking_ws import BlockingSession, close_all, connect_all, receive_all, served_without_loop
from gym_openenv.client import MAX_MESSAGE_BYTES, AsyncSession, BatchConnection, fetch_json, opening, run_async, same_machine
from gym_openenv.direct import SPIN, DirectConnection, connect_direct, spin_for
from gym_openenv.endpoint import Endpoint
from gym_openenv.errors import CapacityReached, ConnectionLost, OpenEnvError, RequestTimeout, ServerError
from gym_openenv.protocol import BATCH_CAPABILITY, BatchReset, BatchResult, BatchStep, RowError
from gym_openenv.shm import ObservationSlots
from gym_openenv.spaces import to_plain

__all__ = ["Chunk", "ServerFailure", "SessionPool", "SlotColumn"]


@dataclass
class SlotColumn:
    """An array column that is still in the server's shared slots: rows ``positions`` of ``view``.

    Read it (one copy, into the caller's buffer) before the next call on these sessions.
    """

    view: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    def read_into(self, out: np.ndarray) -> None:
        np.take(self.view, self.positions, axis=0, out=out)

    def select(self, rows: np.ndarray) -> "SlotColumn":
        return SlotColumn(self.view, self.positions[rows])


@dataclass
class Chunk:
    """Rows ``indices`` of a batch: columnar observation fields, rewards, flags, metadata.

    ``errors`` maps a row to its :class:`~gym_openenv.protocol.RowError` (that
    row's other values are placeholders). ``autoreset`` chunks hold the first
    observations of sessions the server reset right after their step ended.
    """

    indices: np.ndarray
    observation: dict[str, Any]
    reward: list[float | None]
    done: list[bool]
    truncated: list[bool]
    metadata: list[dict[str, Any]] | None
    errors: dict[int, RowError] = field(default_factory=dict)
    autoreset: bool = False

    def select(self, rows: np.ndarray) -> "Chunk":
        """The chunk restricted to ``rows`` (positions in this chunk)."""
        rows = np.asarray(rows, dtype=np.int64)
        picked = rows.tolist()

        def take(column: Any) -> Any:
            if isinstance(column, (SlotColumn, np.ndarray)):
                return column.select(rows) if isinstance(column, SlotColumn) else column[rows]
            return [column[r] for r in picked]

        return Chunk(
            indices=self.indices[rows],
            observation={k: take(v) for k, v in self.observation.items()},
            reward=take(self.reward),
            done=take(self.done),
            truncated=take(self.truncated),
            metadata=None if self.metadata is None else take(self.metadata),
            errors={},
            autoreset=self.autoreset,
        )

    def healthy(self) -> "Chunk":
        """The rows without an error."""
        if not self.errors:
            return self
        return self.select(np.asarray([r for r in range(len(self.indices)) if r not in self.errors], dtype=np.int64))


@dataclass
class ServerFailure:
    """A server whose connection failed (or timed out) during a call: its envs got no result."""

    server: int
    url: str
    indices: np.ndarray
    error: BaseException
    connection: Any  # the failed connection: its env_indices are the envs not yet moved off it


class _BatchServer:
    """The sessions of one server on one batch connection: ``/ws/batch``, or the
    server's direct socket (:mod:`gym_openenv.direct`) when it is on this machine."""

    def __init__(self, url: str, env_indices: np.ndarray, connection: "BatchConnection | DirectConnection", shared_memory: bool = False):
        self.url = url
        self.env_indices = env_indices
        self.connection = connection
        self.session_ids: np.ndarray | None = None
        self._position = {int(e): i for i, e in enumerate(env_indices)}
        self._all_positions = np.arange(len(env_indices))
        self._shared_memory = shared_memory and same_machine(url)
        self.slots: ObservationSlots | None = None
        self._expected: dict[int, np.ndarray] = {}  # seq of a request sent -> the env indices of its rows

    @property
    def in_callers_thread(self) -> bool:
        """Whether :meth:`send_step` / :meth:`send_reset` / :meth:`receive` work (a direct connection)."""
        return isinstance(self.connection, DirectConnection)

    async def open(self) -> None:
        opening_them = opening(len(self.env_indices), self._shared_memory, self.connection.max_message_bytes)
        ids, self.slots = await run_async(opening_them, self.connection.request)
        self.session_ids = np.asarray(ids, dtype=np.int64)

    def _positions(self, env_indices: np.ndarray) -> np.ndarray:
        if env_indices is self.env_indices or (len(env_indices) == len(self.env_indices) and (env_indices == self.env_indices).all()):
            return self._all_positions  # every env of this server, in order: each step
        return np.fromiter((self._position[int(e)] for e in env_indices), dtype=np.int64, count=len(env_indices))

    def _ids(self, env_indices: np.ndarray) -> list[int]:
        if not len(env_indices):
            return []
        return self.session_ids[self._positions(env_indices)].tolist()

    def _chunk(self, env_indices: np.ndarray, reply: BatchResult, autoreset: bool = False) -> Chunk:
        if reply.shm and self.slots is not None:
            positions = self._positions(env_indices)
            if reply.turn % self.slots.turns:  # the arrays are in another turn's slots of these sessions
                positions = positions + self.slots.slot(0, reply.turn)
            for key in reply.shm:
                reply.observation[key] = SlotColumn(self.slots.views[key], positions)
        return _chunk(env_indices, reply, autoreset)

    def _chunks(self, rows: np.ndarray, reply: BatchResult) -> list[Chunk]:
        """A reset/step reply's rows (``rows``: its env indices, resets first), autoreset ones after."""
        chunks = [self._chunk(rows, reply)]
        if reply.autoreset is not None:
            chunks.append(self._chunk(rows[reply.autoreset_rows], reply.autoreset, autoreset=True))
        return chunks

    def _reset_request(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> dict[str, Any]:
        return BatchReset.message(ids=self._ids(env_indices), seeds=seeds, options=options)

    def _step_request(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray, autoreset: bool) -> dict[str, Any]:
        return BatchStep.message(ids=self._ids(env_indices), actions=columns, reset_ids=self._ids(reset_indices), autoreset=autoreset)

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> list[Chunk]:
        reply = await self.connection.request(self._reset_request(env_indices, seeds, options))
        return self._chunks(env_indices, reply)

    async def step(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray, autoreset: bool) -> list[Chunk]:
        reply = await self.connection.request(self._step_request(env_indices, columns, reset_indices, autoreset))
        return self._chunks(np.concatenate([reset_indices, env_indices]), reply)

    # a direct connection, from the caller's thread: send to every server, then receive from each

    def send_reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> int:
        seq = self.connection.send(self._reset_request(env_indices, seeds, options))
        self._expected[seq] = env_indices
        return seq

    def send_step(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray, autoreset: bool) -> int:
        seq = self.connection.send(self._step_request(env_indices, columns, reset_indices, autoreset))
        self._expected[seq] = np.concatenate([reset_indices, env_indices]) if len(reset_indices) else env_indices
        return seq

    def receive(self, seq: int, timeout: float | None = None) -> list[Chunk]:
        rows = self._expected.pop(seq)
        return self._chunks(rows, self.connection.receive(seq, timeout))

    async def release(self, env_indices: np.ndarray) -> None:
        """Close these envs' sessions; the others keep theirs (and their slots)."""
        ids = self._ids(env_indices)
        for e in env_indices.tolist():
            del self._position[e]
        self.env_indices = np.setdiff1d(self.env_indices, env_indices)
        self._all_positions = np.fromiter((self._position[int(e)] for e in self.env_indices), dtype=np.int64, count=len(self.env_indices))
        await self.connection.close_sessions(ids)

    async def close(self) -> None:
        await self.connection.close()
        if self.slots is not None:
            self.slots.close()
            self.slots = None


class _PlainServer:
    """One OpenEnv WebSocket session per env on the event loop (:class:`AsyncSession`):
    for servers :class:`_BlockingPlainServer` cannot reach (``wss://``, a proxy)."""

    in_callers_thread = False

    def __init__(self, url: str, env_indices: np.ndarray, timeout: float, token: str | None):
        self.url = url
        self.env_indices = env_indices
        self.sessions = {int(e): AsyncSession(url, timeout=timeout, token=token) for e in env_indices}

    async def open(self) -> None:
        await asyncio.gather(*(s.connect() for s in self.sessions.values()))

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> list[Chunk]:
        calls = [self.sessions[int(e)].reset(**_reset_kwargs(options, s)) for e, s in zip(env_indices, seeds)]
        return [await _plain_chunk(env_indices, calls)]

    async def step(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray, autoreset: bool) -> list[Chunk]:
        calls = [self.sessions[int(e)].reset() for e in reset_indices]
        calls += [self.sessions[int(e)].step(row) for e, row in zip(env_indices, _rows(columns, len(env_indices)))]
        return [await _plain_chunk(np.concatenate([reset_indices, env_indices]), calls)]

    async def release(self, env_indices: np.ndarray) -> None:
        """Close these envs' sessions; the others keep theirs."""
        leaving = [self.sessions.pop(int(e)) for e in env_indices]
        self.env_indices = np.setdiff1d(self.env_indices, env_indices)
        await asyncio.gather(*(s.close() for s in leaving), return_exceptions=True)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)


class _BlockingPlainServer:
    """One OpenEnv WebSocket session per env, driven from the caller's thread
    (:mod:`gym_openenv.blocking_ws`): :meth:`send_step` / :meth:`send_reset` write a
    request to each session, :meth:`receive` waits for all their replies in one ``poll``.
    The async methods (opening, recovery, moves, closing) run the same calls on a worker thread.
    """

    in_callers_thread = True

    def __init__(self, url: str, env_indices: np.ndarray, timeout: float, token: str | None):
        self.url = url
        self.env_indices = env_indices
        self.timeout = timeout
        self.sessions = {int(e): BlockingSession(url, timeout=timeout, token=token) for e in env_indices}
        self._seqs = itertools.count(1)
        #: seq of a call sent -> its rows' env indices, their sessions, each row's error from sending (or None)
        self._expected: dict[int, tuple[np.ndarray, list[BlockingSession], list[BaseException | None]]] = {}

    async def open(self) -> None:
        await asyncio.to_thread(connect_all, list(self.sessions.values()), self.timeout)

    def send_reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> int:
        messages = [{"type": "reset", "data": to_plain(_reset_kwargs(options, s), keep_arrays=False)} for s in seeds]
        return self._send(env_indices, messages)

    def send_step(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray, autoreset: bool) -> int:
        messages = [{"type": "reset", "data": {}} for _ in range(len(reset_indices))]
        messages += [{"type": "step", "data": row} for row in _rows(columns, len(env_indices))]
        return self._send(np.concatenate([reset_indices, env_indices]) if len(reset_indices) else env_indices, messages)

    def _send(self, rows: np.ndarray, messages: list[dict[str, Any]]) -> int:
        """One request per row; a session that cannot send gets its error as its reply (no
        request of a call is left unread because another one failed)."""
        sessions = [self.sessions[int(e)] for e in rows.tolist()]
        errors: list[BaseException | None] = [None] * len(sessions)
        for i, (session, message) in enumerate(zip(sessions, messages)):
            try:
                session.send(message)
            except OpenEnvError as e:  # ConnectionLost, or the refusal that closed it (CAPACITY_REACHED)
                errors[i] = e
        seq = next(self._seqs)
        self._expected[seq] = (rows, sessions, errors)
        return seq

    def receive(self, seq: int, timeout: float | None = None) -> list[Chunk]:
        rows, sessions, errors = self._expected.pop(seq)
        sent = [session for session, error in zip(sessions, errors) if error is None]
        replies = iter(receive_all(sent, timeout or self.timeout))
        payloads = [next(replies) if error is None else error for error in errors]
        return [_plain_result(rows, [p if isinstance(p, BaseException) else p["data"] for p in payloads])]

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> list[Chunk]:
        return await asyncio.to_thread(lambda: self.receive(self.send_reset(env_indices, seeds, options)))

    async def step(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray, autoreset: bool) -> list[Chunk]:
        return await asyncio.to_thread(lambda: self.receive(self.send_step(env_indices, columns, reset_indices, autoreset)))

    async def release(self, env_indices: np.ndarray) -> None:
        """Close these envs' sessions; the others keep theirs."""
        leaving = [self.sessions.pop(int(e)) for e in env_indices]
        self.env_indices = np.setdiff1d(self.env_indices, env_indices)
        await asyncio.to_thread(close_all, leaving)

    async def close(self) -> None:
        await asyncio.to_thread(close_all, list(self.sessions.values()))


def _reset_kwargs(options: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
    return {**(options or {}), **({} if seed is None else {"seed": seed})}


def _rows(columns: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Action columns -> one OpenEnv action dict per env (JSON-ready values)."""
    return [{k: _row(col, i) for k, col in columns.items()} for i in range(n)]


async def _plain_chunk(env_indices: np.ndarray, calls: list) -> Chunk:
    """One OpenEnv call per env, concurrently: :func:`_plain_result` of their payloads."""
    return _plain_result(env_indices, await asyncio.gather(*calls, return_exceptions=True))


def _plain_result(env_indices: np.ndarray, payloads: list[Any]) -> Chunk:
    """One OpenEnv payload (or the exception its call raised) per env -> a chunk; an
    env's error reply fails its row only.

    ``CAPACITY_REACHED`` is raised instead: the server refused the session itself (it
    says so at the first call on a new connection), so no row of it can be recovered.
    """
    for p in payloads:
        if isinstance(p, BaseException) and (not isinstance(p, ServerError) or isinstance(p, CapacityReached)):
            raise p  # the connection (not the environment) failed, or the session was refused
    reply = BatchResult.of([None if isinstance(p, BaseException) else p for p in payloads])
    reply.errors = [
        RowError(row, p.code, p.message, bool(p.details.get("episode_lost")))
        for row, p in enumerate(payloads) if isinstance(p, ServerError)
    ]
    return _chunk(env_indices, reply)


def _row(column: Any, i: int) -> Any:
    value = column[i]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _chunk(env_indices: np.ndarray, reply: BatchResult, autoreset: bool = False) -> Chunk:
    return Chunk(
        indices=env_indices,
        observation=reply.observation,
        reward=reply.reward,
        done=reply.done,
        truncated=reply.truncated,
        metadata=reply.metadata,
        errors={e.row: e for e in reply.errors},
        autoreset=autoreset,
    )


@dataclass
class Sent:
    """Requests sent by :meth:`SessionPool.send_step` / :meth:`SessionPool.send_reset`, not yet received."""

    #: server -> env indices of its rows
    touched: dict[int, np.ndarray] = field(default_factory=dict)
    #: server -> the seq of its request
    seqs: dict[int, int] = field(default_factory=dict)
    #: server -> why its request could not be sent
    failed: dict[int, ConnectionLost] = field(default_factory=dict)


class SessionPool:
    """``num_envs`` sessions over ``urls``, env ``i`` on server ``i * len(urls) // num_envs``.

    Args:
        urls: base URLs of the servers (one or more).
        num_envs: number of sessions in total.
        protocol: ``"auto"`` (batch where advertised), ``"batch"`` or ``"openenv"``.
        shared_memory: take large arrays from co-located servers' shared blocks.
        direct: use a co-located server's direct socket (:mod:`gym_openenv.direct`) where
            it is in reach, and ``/ws/batch`` elsewhere.
        max_message_bytes: the largest reply frame accepted (a server answers a bigger
            one with ``MESSAGE_TOO_LARGE``, and the connection stays up).
    """

    def __init__(
        self,
        urls: list[str],
        num_envs: int,
        *,
        protocol: str = "auto",
        timeout: float = 60.0,
        token: str | None = None,
        shared_memory: bool = True,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        direct: bool = True,
    ):
        if protocol not in ("auto", "batch", "openenv"):
            raise ValueError(f"protocol must be 'auto', 'batch' or 'openenv', got {protocol!r}")
        if not urls:
            raise ValueError("SessionPool needs at least one server URL")
        self.urls = list(urls)
        self.num_envs = num_envs
        self.protocol = protocol
        self.timeout = timeout
        self.token = token
        self.shared_memory = shared_memory
        self.max_message_bytes = max_message_bytes
        self.direct = direct
        self.servers: list[_BatchServer | _PlainServer | _BlockingPlainServer] = []
        self._server_of = np.empty(num_envs, dtype=np.int64)
        self._all_envs = np.arange(num_envs)
        # _split of every env, cached until an env changes server (a new version object then)
        self._server_of_version: object = object()
        self._split_all: tuple[object, dict] | None = None

    async def open(self) -> None:
        blocks = np.array_split(np.arange(self.num_envs), len(self.urls))
        assigned = [(url, block) for url, block in zip(self.urls, blocks) if len(block)]
        self.servers = [None] * len(assigned)
        for k, (_, block) in enumerate(assigned):
            self._server_of[block] = k
        self._server_of_version = object()
        try:
            await asyncio.gather(*(self._connect(k, url, block) for k, (url, block) in enumerate(assigned)))
        except BaseException:
            await self.close()
            raise

    async def _connect(self, k: int, url: str, block: np.ndarray) -> None:
        meta = await fetch_json(url, "/metadata", self.token)
        batched = BATCH_CAPABILITY in (meta.get("capabilities") or [])
        if self.protocol == "batch" and not batched:
            raise OpenEnvError(f"{url} does not offer the batch protocol ({BATCH_CAPABILITY}); use protocol='auto' or 'openenv'")
        if batched and self.protocol != "openenv":
            server = _BatchServer(url, block, await self._batch_connection(url, meta), self.shared_memory)
        elif served_without_loop(Endpoint.parse(url, self.token)):
            server = _BlockingPlainServer(url, block, self.timeout, self.token)
        else:
            server = _PlainServer(url, block, self.timeout, self.token)
        self.servers[k] = server
        await server.open()

    async def _batch_connection(self, url: str, meta: dict[str, Any]) -> "BatchConnection | DirectConnection":
        if self.direct:
            connection = await asyncio.to_thread(
                connect_direct, meta, url, timeout=self.timeout, token=self.token, max_message_bytes=self.max_message_bytes,
                spin=spin_for(len(self.urls)), server_spin=SPIN,
            )
            if connection is not None:
                return connection
        connection = BatchConnection(url, timeout=self.timeout, token=self.token, max_message_bytes=self.max_message_bytes)
        await connection.connect()
        return connection

    async def move(self, env_indices: np.ndarray, url: str) -> None:
        """Fresh sessions for ``env_indices`` on ``url`` (a new connection); their old ones are closed.

        The other envs keep their sessions. A connection left without envs is
        closed but stays in :attr:`servers`, so server numbers in failures stay valid.
        """
        k = len(self.servers)
        self.servers.append(None)
        try:
            await self._connect(k, url, env_indices)
        except BaseException:
            server = self.servers.pop()
            if server is not None:
                await server.close()
            raise
        previous = np.unique(self._server_of[env_indices]).tolist()
        self._server_of[env_indices] = k
        self._server_of_version = object()
        for j in previous:
            old = self.servers[j]
            leaving = env_indices[np.isin(env_indices, old.env_indices)]
            if len(leaving) == len(old.env_indices):
                old.env_indices = leaving[:0]
                await old.close()
                continue
            try:
                await old.release(leaving)
            except OpenEnvError:
                pass  # its server is gone, and the sessions with it

    @property
    def batched(self) -> bool:
        return all(isinstance(s, _BatchServer) for s in self.servers)

    @property
    def in_callers_thread(self) -> bool:
        """Whether every server answers in the caller's thread (a direct batch connection, or
        plain sessions on ``ws://``): then :meth:`send_step`, :meth:`send_reset` and
        :meth:`receive` run the calls from that thread, with no event loop in between."""
        return all(s.in_callers_thread for s in self.servers if s is not None and len(s.env_indices))

    def _split(self, env_indices: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{server: (env indices on it, their positions in ``env_indices``)}."""
        if not len(env_indices):
            return {}
        if len(env_indices) == self.num_envs and (env_indices == self._all_envs).all():  # every env, in order: each step
            if self._split_all is None or self._split_all[0] is not self._server_of_version:
                parts = self._split_by_owner(self._all_envs)
                for k, (idx, positions) in parts.items():  # the server's own array: _positions knows it at once
                    own = getattr(self.servers[k], "env_indices", None)
                    if own is not None and len(own) == len(idx) and (own == idx).all():
                        parts[k] = (own, positions)
                self._split_all = (self._server_of_version, parts)
            return self._split_all[1]
        return self._split_by_owner(env_indices)

    def _split_by_owner(self, env_indices: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        owners = self._server_of[env_indices]
        parts = {}
        for k in np.unique(owners).tolist():
            positions = np.flatnonzero(owners == k)
            parts[k] = (env_indices[positions], positions)
        return parts

    def _step_parts(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray | None) -> dict[int, tuple[np.ndarray, dict[str, Any], np.ndarray]]:
        """{server: (env indices to step on it, their action columns, env indices to reset on it)}."""
        reset_indices = np.zeros(0, dtype=np.int64) if reset_indices is None else reset_indices
        stepping, resetting = self._split(env_indices), self._split(reset_indices)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        parts = {}
        for k in sorted(set(stepping) | set(resetting)):
            idx, pos = stepping.get(k, empty)
            # one server steps every row (in order): the columns as they are
            cols = columns if len(pos) == len(env_indices) else {name: _take(col, pos) for name, col in columns.items()}
            parts[k] = (idx, cols, resetting.get(k, empty)[0])
        return parts

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None = None) -> list[Chunk | ServerFailure]:
        parts = self._split(env_indices)
        calls = {k: self.servers[k].reset(idx, [seeds[p] for p in pos], options) for k, (idx, pos) in parts.items()}
        return await self._settle(calls, {k: idx for k, (idx, _) in parts.items()})

    async def step(
        self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray | None = None, autoreset: bool = False
    ) -> list[Chunk | ServerFailure]:
        """Step ``env_indices`` with ``columns`` and reset ``reset_indices``: one request per server.

        ``autoreset``: servers reset the envs whose step ended in the same call
        (their first observations come back as ``autoreset`` chunks).
        """
        calls, touched = {}, {}
        for k, (idx, cols, reset_idx) in self._step_parts(env_indices, columns, reset_indices).items():
            calls[k] = self.servers[k].step(idx, cols, reset_idx, autoreset)
            touched[k] = np.concatenate([reset_idx, idx]) if len(reset_idx) else idx
        return await self._settle(calls, touched)

    def send_reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None = None) -> "Sent":
        """:meth:`reset`'s requests, sent from this thread (:attr:`in_callers_thread` only); :meth:`receive` collects."""
        parts = self._split(env_indices)
        return self._send({k: (idx, lambda server, idx=idx, pos=pos: server.send_reset(idx, [seeds[p] for p in pos], options)) for k, (idx, pos) in parts.items()})

    def send_step(self, env_indices: np.ndarray, columns: dict[str, Any], reset_indices: np.ndarray | None = None, autoreset: bool = False) -> "Sent":
        """:meth:`step`'s requests, sent from this thread (:attr:`in_callers_thread` only); :meth:`receive` collects."""
        sends = {}
        for k, (idx, cols, reset_idx) in self._step_parts(env_indices, columns, reset_indices).items():
            sends[k] = (np.concatenate([reset_idx, idx]) if len(reset_idx) else idx, lambda server, i=idx, c=cols, r=reset_idx: server.send_step(i, c, r, autoreset))
        return self._send(sends)

    def _send(self, sends: dict[int, tuple[np.ndarray, Any]]) -> "Sent":
        sent = Sent()
        for k, (touched, send) in sends.items():
            sent.touched[k] = touched
            try:
                sent.seqs[k] = send(self.servers[k])
            except ConnectionLost as e:
                sent.failed[k] = e
        return sent

    def receive(self, sent: "Sent", timeout: float | None = None) -> list[Chunk | ServerFailure]:
        """The replies to :meth:`send_step` / :meth:`send_reset`, as :meth:`step` returns them.

        Every server's replies are collected before another error (``CAPACITY_REACHED``) is raised.
        """
        settled: list[Chunk | ServerFailure] = []
        raised: BaseException | None = None
        for k, touched in sent.touched.items():
            server = self.servers[k]
            try:
                if k in sent.failed:
                    raise sent.failed[k]
                settled += server.receive(sent.seqs[k], timeout)
            except (ConnectionLost, RequestTimeout) as e:
                settled.append(ServerFailure(k, server.url, touched, e, server))
            except OpenEnvError as e:
                raised = raised or e
        if raised is not None:
            raise raised
        return settled

    async def _settle(self, calls: dict[int, Any], touched: dict[int, np.ndarray]) -> list[Chunk | ServerFailure]:
        """Every server's chunks; a lost or timed-out connection becomes a :class:`ServerFailure`
        so the other servers' results are not lost with it."""
        servers = {k: self.servers[k] for k in calls}
        results = await asyncio.gather(*calls.values(), return_exceptions=True)
        settled: list[Chunk | ServerFailure] = []
        for k, result in zip(calls, results):
            if isinstance(result, (ConnectionLost, RequestTimeout)):
                settled.append(ServerFailure(k, servers[k].url, touched[k], result, servers[k]))
            elif isinstance(result, BaseException):
                raise result
            else:
                settled += result
        return settled

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers if s is not None), return_exceptions=True)
        self.servers = []


def _take(column: Any, positions: np.ndarray) -> Any:
    if isinstance(column, np.ndarray):
        return column[positions]
    return [column[p] for p in positions.tolist()]  # Python ints: indexing a list with numpy ones is slow

