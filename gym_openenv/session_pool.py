"""Many remote sessions driven as one: the transport under the vector env.

A :class:`SessionPool` holds ``num_envs`` sessions spread over one or more
servers. Where a server advertises the batch protocol, all of its sessions
share one ``/ws/batch`` connection and one frame resets or steps them
together; otherwise each session is a plain OpenEnv WebSocket (the fallback
for foreign servers). Either way a call returns :class:`Chunk` s: the rows
of one server's reply, column by column, with the env indices they belong to.
"""

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit
from typing import Any

import numpy as np

from gym_openenv.client import AsyncSession, BatchConnection, fetch_json
from gym_openenv.errors import ConnectionLost, OpenEnvError
from gym_openenv.protocol import BATCH_CAPABILITY, batch_payload
from gym_openenv.shm import ObservationSlots

__all__ = ["Chunk", "ServerFailure", "SessionPool"]


@dataclass
class Chunk:
    """Rows ``indices`` of a batch: columnar observation fields, rewards, flags, metadata."""

    indices: np.ndarray
    observation: dict[str, Any]
    reward: list[float | None]
    done: list[bool]
    truncated: list[bool]
    metadata: list[dict[str, Any]] | None


@dataclass
class ServerFailure:
    """A server whose connection failed during a call: its envs got no result."""

    server: int
    url: str
    indices: np.ndarray
    error: BaseException
    connection: Any  # the failed server object, to tell an already-replaced one apart


class _BatchServer:
    """The sessions of one server on one batch connection."""

    def __init__(self, url: str, env_indices: np.ndarray, timeout: float, token: str | None, array_fields: dict | None = None):
        self.url = url
        self.env_indices = env_indices
        self.connection = BatchConnection(url, timeout=timeout, token=token)
        self.session_ids: np.ndarray | None = None
        self._position = {int(e): i for i, e in enumerate(env_indices)}
        self._array_fields = array_fields if array_fields and _same_machine(url) else None
        self.slots: ObservationSlots | None = None

    async def open(self) -> None:
        if self._array_fields:
            self.slots = ObservationSlots(self._array_fields, len(self.env_indices))
        reply = await self.connection.open(len(self.env_indices), self.slots.describe() if self.slots else None)
        self.session_ids = np.asarray(reply["ids"], dtype=np.int64)
        if self.slots is not None and not reply.get("shm"):
            self.slots.close()  # the server could not reach them: arrays come in the frame
            self.slots = None

    def _chunk(self, env_indices: np.ndarray, reply: dict[str, Any]) -> Chunk:
        if reply.get("shm") and self.slots is not None:
            positions = np.fromiter((self._position[int(e)] for e in env_indices), dtype=np.int64, count=len(env_indices))
            for key in reply["shm"]:
                reply["observation"][key] = self.slots.views[key][positions]  # one copy, out of the block
        return _chunk(env_indices, reply)

    def _ids(self, env_indices: np.ndarray) -> list[int]:
        return self.session_ids[[self._position[int(e)] for e in env_indices]].tolist()

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> Chunk:
        reply = await self.connection.reset(self._ids(env_indices), seeds, options)
        return self._chunk(env_indices, reply)

    async def step(self, env_indices: np.ndarray, columns: dict[str, Any]) -> Chunk:
        return self._chunk(env_indices, await self.connection.step(self._ids(env_indices), columns))

    async def close(self) -> None:
        await self.connection.close()
        if self.slots is not None:
            self.slots.close()
            self.slots = None


class _PlainServer:
    """One OpenEnv WebSocket session per env: works with any OpenEnv server."""

    def __init__(self, url: str, env_indices: np.ndarray, timeout: float, token: str | None):
        self.url = url
        self.env_indices = env_indices
        self.sessions = {int(e): AsyncSession(url, timeout=timeout, token=token) for e in env_indices}

    async def open(self) -> None:
        await asyncio.gather(*(s.connect() for s in self.sessions.values()))

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None) -> Chunk:
        def kwargs(seed: int | None) -> dict[str, Any]:
            return {**(options or {}), **({} if seed is None else {"seed": seed})}

        payloads = await asyncio.gather(*(self.sessions[int(e)].reset(**kwargs(s)) for e, s in zip(env_indices, seeds)))
        return _chunk(env_indices, batch_payload(list(payloads)))

    async def step(self, env_indices: np.ndarray, columns: dict[str, Any]) -> Chunk:
        rows = [{k: _row(col, i) for k, col in columns.items()} for i in range(len(env_indices))]
        payloads = await asyncio.gather(*(self.sessions[int(e)].step(row) for e, row in zip(env_indices, rows)))
        return _chunk(env_indices, batch_payload(list(payloads)))

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)


def _same_machine(url: str) -> bool:
    """Whether a server URL is on this machine (loopback or a Unix socket)."""
    host = urlsplit(url).hostname or ""
    return url.startswith("http+unix://") or host in ("localhost", "::1") or host.startswith("127.")


def _row(column: Any, i: int) -> Any:
    value = column[i]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _chunk(env_indices: np.ndarray, reply: dict[str, Any]) -> Chunk:
    return Chunk(
        indices=env_indices,
        observation=reply["observation"],
        reward=reply["reward"],
        done=reply["done"],
        truncated=reply.get("truncated") or [False] * len(env_indices),
        metadata=reply.get("metadata"),
    )


class SessionPool:
    """``num_envs`` sessions over ``urls``, env ``i`` on server ``i * len(urls) // num_envs``.

    Args:
        urls: base URLs of the servers (one or more).
        num_envs: number of sessions in total.
        protocol: ``"auto"`` (batch where advertised), ``"batch"`` or ``"openenv"``.
    """

    def __init__(
        self,
        urls: list[str],
        num_envs: int,
        *,
        protocol: str = "auto",
        timeout: float = 60.0,
        token: str | None = None,
        array_fields: dict[str, tuple[str, tuple[int, ...]]] | None = None,
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
        self.array_fields = array_fields  # observation arrays that may travel through shared memory
        self.servers: list[_BatchServer | _PlainServer] = []
        self._server_of = np.empty(num_envs, dtype=np.int64)

    async def open(self) -> None:
        blocks = np.array_split(np.arange(self.num_envs), len(self.urls))
        assigned = [(url, block) for url, block in zip(self.urls, blocks) if len(block)]
        self.servers = [None] * len(assigned)
        for k, (_, block) in enumerate(assigned):
            self._server_of[block] = k
        try:
            await asyncio.gather(*(self._connect(k, url, block) for k, (url, block) in enumerate(assigned)))
        except BaseException:
            await self.close()
            raise

    async def _connect(self, k: int, url: str, block: np.ndarray) -> None:
        meta = await fetch_json(url, "/metadata", self.token)
        batched = BATCH_CAPABILITY in (meta.get("capabilities") or [])
        if self.protocol == "batch" and not batched:
            raise OpenEnvError(f"{url} does not offer the batch protocol; use protocol='auto' or 'openenv'")
        if batched and self.protocol != "openenv":
            server = _BatchServer(url, block, self.timeout, self.token, self.array_fields)
        else:
            server = _PlainServer(url, block, self.timeout, self.token)
        self.servers[k] = server
        await server.open()

    async def replace(self, k: int, url: str) -> None:
        """Reconnect server ``k``'s envs to ``url`` (a restarted server): fresh sessions."""
        old = self.servers[k]
        await old.close()
        await self._connect(k, url, old.env_indices)

    @property
    def batched(self) -> bool:
        return all(isinstance(s, _BatchServer) for s in self.servers)

    def _split(self, env_indices: np.ndarray) -> list[tuple[Any, np.ndarray, np.ndarray]]:
        """(server, env indices on it, their positions in ``env_indices``) per server touched."""
        owners = self._server_of[env_indices]
        parts = []
        for k in np.unique(owners):
            positions = np.flatnonzero(owners == k)
            parts.append((self.servers[k], env_indices[positions], positions))
        return parts

    async def reset(self, env_indices: np.ndarray, seeds: list[int | None], options: dict[str, Any] | None = None) -> list[Chunk | ServerFailure]:
        parts = self._split(env_indices)
        calls = [server.reset(idx, [seeds[p] for p in pos], options) for server, idx, pos in parts]
        return await self._settle(parts, calls)

    async def step(self, env_indices: np.ndarray, columns: dict[str, Any]) -> list[Chunk | ServerFailure]:
        parts = self._split(env_indices)
        calls = [server.step(idx, {k: _take(col, pos) for k, col in columns.items()}) for server, idx, pos in parts]
        return await self._settle(parts, calls)

    async def _settle(self, parts: list, calls: list) -> list[Chunk | ServerFailure]:
        """Every server's result; a lost connection becomes a :class:`ServerFailure`
        so the other servers' results are not lost with it."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        settled = []
        for (server, idx, _), result in zip(parts, results):
            if isinstance(result, ConnectionLost):
                k = next(i for i, s in enumerate(self.servers) if s is server) if server in self.servers else -1
                settled.append(ServerFailure(k, server.url, idx, result, server))
            elif isinstance(result, BaseException):
                raise result
            else:
                settled.append(result)
        return settled

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers if s is not None), return_exceptions=True)
        self.servers = []


def _take(column: Any, positions: np.ndarray) -> Any:
    if isinstance(column, np.ndarray):
        return column[positions]
    return [column[p] for p in positions]
