"""Clients of the direct transport: a co-located server's Unix socket, used from the caller's thread.

A server on this machine names its direct socket in ``/metadata``
(``direct_socket``, see :mod:`gym_openenv.server.direct`). There the batch
protocol's requests go out and their replies come back in the thread that
asked, with no event loop in between; the caller waits by spinning on the
socket for a moment, then in ``poll`` (:mod:`gym_openenv.framing`):

* :class:`DirectConnection`: many sessions on one connection; blocking
  :meth:`~DirectConnection.send` / :meth:`~DirectConnection.receive` (a vector
  env sends to every server, then collects), and the async methods of
  :class:`~gym_openenv.client.BatchConnection` for the session pool's rare calls.
* :class:`DirectSession`: one session, what ``gym.make`` uses on such a server.

:func:`connect_direct` returns ``None`` wherever the socket is out of reach
(another machine, another user, a container whose socket folder this machine
does not share): callers then use ``/ws/batch``.
"""

import asyncio
import os
import socket
import threading
from typing import Any

from gym_openenv.client import opening, run_blocking, same_machine, single_payload
from gym_openenv.errors import ConnectionLost, RequestTimeout, Unauthorized, server_error
from gym_openenv.framing import FrameReader, receive_frame, send_frame
from gym_openenv.protocol import (
    BatchClose,
    BatchClosed,
    BatchOpened,
    BatchRequest,
    BatchReset,
    BatchState,
    BatchStep,
    DirectHello,
    ErrorCode,
    decode_batch_reply,
    decode_msgpack,
    encode_msgpack,
)
from gym_openenv.spaces import to_plain

__all__ = ["DirectConnection", "DirectSession", "connect_direct", "spin_for"]

DEFAULT_TIMEOUT = 60.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _spin_from_environ(default: float = 0.001) -> float:
    text = os.environ.get("OPENENV_SPIN", "").strip()
    try:
        seconds = float(text) if text else default
    except ValueError:
        seconds = -1.0
    if not 0.0 <= seconds <= 0.1:
        raise ValueError(f"OPENENV_SPIN={text!r}: give seconds from 0 (no spinning) to 0.1")
    return seconds


#: Seconds a caller polls for a reply, and a server for the next request, before sleeping in
#: the kernel (see :class:`DirectConnection`); ``$OPENENV_SPIN`` sets it, 0 turns spinning off.
SPIN = _spin_from_environ()


def spin_for(servers: int) -> float:
    """How long to spin for replies from ``servers`` busy servers: :data:`SPIN` while each
    of them and the caller can have a CPU of this process's own; else 0 (a spinning caller
    would take CPU from the servers it waits for). Servers may always spin for the next
    request (``server_spin``): while they wait, the caller's work is all there is to run,
    and a spinning server yields its CPU every few microseconds."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return SPIN if servers < cpus else 0.0


def connect_direct(
    metadata: Any,
    base_url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    token: str | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    spin: float = 0.0,
    server_spin: float = 0.0,
) -> "DirectConnection | None":
    """A connection to the direct socket ``metadata`` (the server's ``/metadata``) names, if it is in reach.

    Raises:
        Unauthorized: the server refused the token (as it would on ``/ws/batch``).
    """
    if not DirectSession.reachable(metadata, base_url):
        return None
    path = metadata["direct_socket"]
    connection = DirectConnection(path, metadata.get("server_id"), timeout=timeout, token=token, max_message_bytes=max_message_bytes, spin=spin, server_spin=server_spin)
    try:
        connection.connect()
    except (OSError, ConnectionLost, ValueError):
        return None  # not this machine's socket after all (a container's, another user's): use /ws/batch
    return connection


def _seq_of(reply: Any) -> Any:
    """The ``seq`` a decoded reply echoes (an error reply is the only dict)."""
    return reply.get("seq") if type(reply) is dict else reply.seq


def _raised_if_error(reply: Any) -> Any:
    """A decoded reply; the server's error raised (an error reply is the only dict)."""
    if type(reply) is dict:
        raise server_error(reply.get("data", {}))
    return reply


class DirectConnection:
    """Many sessions on a direct socket; requests and replies are the batch protocol's.

    One request is in flight at a time. As on :class:`~gym_openenv.client.BatchConnection`,
    every reply must echo its request's ``seq``, and a timed-out request closes the
    connection (the next call raises :class:`~gym_openenv.ConnectionLost`).

    ``spin``: seconds a caller waiting for a reply polls the socket before it sleeps
    (:class:`~gym_openenv.framing.FrameReader`); ``server_spin``: the same for the server
    waiting for the next request (asked for in the hello). A reply that comes meanwhile
    is read without waking a sleeping thread, which on a virtual machine means an
    interrupt to an idle CPU: worth it for one environment that answers in a few
    hundred microseconds, while its server has a CPU to itself.
    """

    def __init__(
        self,
        path: str,
        server_id: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        spin: float = 0.0,
        server_spin: float = 0.0,
    ):
        self.path = path
        self.server_id = server_id
        self.timeout = timeout
        self.token = token
        self.max_message_bytes = max_message_bytes
        self.spin = spin
        self.server_spin = server_spin
        self._sock: socket.socket | None = None
        self._replies: FrameReader | None = None
        self._closed_because: str | None = None
        self._seq = 0
        #: seq -> its reply (None until it came), for every request sent and not yet received
        self._waiting: dict[int, Any] = {}
        #: seqs of requests whose reply may bring a shared block's descriptor (opening with shm)
        self._bringing_fds: set[int] = set()
        self._lock = threading.Lock()

    def connect(self) -> "DirectConnection":
        """Connect and say hello (blocking)."""
        if self._sock is not None:
            return self
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            send_frame(sock, encode_msgpack(DirectHello.model_construct(token=self.token, max_reply_bytes=self.max_message_bytes, spin=self.server_spin, seq=0).wire()))
            welcome = decode_msgpack(receive_frame(sock, 64 * 1024))
        except BaseException:
            sock.close()
            raise
        if welcome.get("type") == "error":
            sock.close()
            data = welcome.get("data") or {}
            if data.get("code") == ErrorCode.UNAUTHORIZED.value:
                raise Unauthorized(f"the server's direct socket refused the token: {data.get('message')}")
            raise server_error(data)
        if self.server_id is not None and welcome.get("server_id") != self.server_id:
            sock.close()
            raise ValueError(f"{self.path} is served by another server ({welcome.get('server_id')}, not {self.server_id})")
        sock.setblocking(False)  # waits are the reader's (spin, then poll) and send_frame's
        self._sock, self._replies = sock, FrameReader(sock, self.max_message_bytes, self.spin)
        return self

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def send(self, message: "BatchRequest | dict[str, Any]") -> int:
        """Send ``message`` (a request model, or its :meth:`~gym_openenv.protocol.BatchRequest.message`
        map); returns its ``seq``, for :meth:`receive`. Requests may queue up: the server
        answers them in order."""
        with self._lock:
            seq = self._send(message)
            self._waiting[seq] = None
            return seq

    def receive(self, seq: int, timeout: float | None = None) -> Any:
        """The reply to request ``seq`` (a ``Batch*`` model), or the server's error raised.

        Replies to requests sent before it are read first and kept for their own :meth:`receive`.
        """
        with self._lock:
            if seq not in self._waiting:
                raise RuntimeError(f"request {seq} was not sent, or its reply was received already")
            reply = self._collect(seq, timeout or self.timeout)
        return _raised_if_error(reply)

    def call(self, message: "BatchRequest | dict[str, Any]", timeout: float | None = None) -> Any:
        """Send ``message`` and wait for its reply."""
        with self._lock:
            seq = self._send(message)
            if not self._waiting:  # the only request in flight (every gym.make step): its reply is the next
                reply = self._next_reply(seq, timeout or self.timeout)
            else:  # replies to requests sent before come first, kept for their receive()
                self._waiting[seq] = None
                reply = self._collect(seq, timeout or self.timeout)
        return _raised_if_error(reply)

    def _send(self, message: "BatchRequest | dict[str, Any]") -> int:
        if self._sock is None:
            raise ConnectionLost(f"the direct connection to {self.path} is closed: {self._closed_because or 'not connected'}")
        self._seq += 1
        wire = message if type(message) is dict or not isinstance(message, BatchRequest) else message.wire()
        wire["seq"] = seq = self._seq
        if wire.get("type") == "open" and wire.get("shm"):
            self._bringing_fds.add(seq)
            self._replies.take_fds = True
        try:
            send_frame(self._sock, encode_msgpack(wire))
        except OSError as e:
            self._drop(f"closed: {e}")
            raise ConnectionLost(f"connection to the server closed: {e}") from e
        return seq

    def _collect(self, seq: int, wait: float) -> Any:
        """Read replies until the one to ``seq`` came (the others kept for their receive()); it, taken out."""
        while self._waiting[seq] is None:
            oldest = next(s for s, r in self._waiting.items() if r is None)  # answered in the order sent
            self._waiting[oldest] = self._next_reply(oldest, wait)
        return self._waiting.pop(seq)

    def _next_reply(self, seq: int, wait: float) -> Any:
        """The next reply on the socket, decoded (an opened one given its shared block's descriptor),
        checked to be the answer to request ``seq``."""
        if self._sock is None:
            raise ConnectionLost(f"the direct connection to {self.path} is closed: {self._closed_because}")
        try:
            raw = self._replies.read(wait)
        except TimeoutError:
            self._drop(f"no reply within {wait}s")
            raise RequestTimeout(f"no reply from the server within {wait}s; the connection was closed") from None
        except (OSError, ValueError) as e:
            self._drop(f"closed: {e}")
            raise ConnectionLost(f"connection to the server closed: {e}") from e
        reply = decode_batch_reply(raw)
        answered = _seq_of(reply)
        if self._bringing_fds:
            self._claim_fd(reply, answered)
        if answered != seq:  # cannot happen with a conforming server; never pass it on as another's
            self._drop(f"reply {answered} to request {seq}")
            raise ConnectionLost(f"the server answered request {seq} with a reply to {answered}; the connection was closed")
        return reply

    def _claim_fd(self, reply: Any, seq: Any) -> None:
        """Give an opened reply the descriptor of its shared block, which came with its frame."""
        if seq in self._bringing_fds:
            self._bringing_fds.discard(seq)
            if isinstance(reply, BatchOpened) and reply.shm and self._replies.fds:
                reply.fd = self._replies.fds.pop(0)
        self._replies.take_fds = bool(self._bringing_fds)
        if not self._bringing_fds:
            self._replies.close_fds()  # none may be left: a descriptor no reply claimed

    def _drop(self, why: str) -> None:
        sock, self._sock = self._sock, None
        self._closed_because = why
        if sock is not None:
            sock.close()
        if self._replies is not None:
            self._replies.close_fds()

    def close_now(self) -> None:
        """Close the connection and with it every session on it (idempotent)."""
        self._drop("closed by the client")

    # what the session pool's event loop calls on a connection (as on BatchConnection)

    async def request(self, message: "BatchRequest | dict[str, Any]", timeout: float | None = None) -> Any:
        return await asyncio.to_thread(self.call, message, timeout)

    async def close_sessions(self, ids: list[int]) -> BatchClosed:
        return await self.request(BatchClose.model_construct(ids=ids))

    async def close(self) -> None:
        self.close_now()


class DirectSession:
    """One session on a direct connection (a batch of one), called from the caller's thread.

    The blocking twin of :class:`~gym_openenv.client.BatchSession`: OpenEnv payload
    dicts in and out, shared-memory arrays from the server's block. A dropped
    connection is reopened, with a new session, at the next :meth:`reset`.
    """

    def __init__(self, metadata: dict[str, Any], base_url: str, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None, shared_memory: bool = True):
        self.metadata = metadata
        self.base_url = base_url
        self.timeout = timeout
        self.token = token
        self.shared_memory = shared_memory
        self._connection: DirectConnection | None = None
        self._id = 0
        self._slots: Any = None

    @classmethod
    def reachable(cls, metadata: Any, base_url: str) -> bool:
        """Whether ``metadata`` names a direct socket this process may reach."""
        return isinstance(metadata, dict) and isinstance(metadata.get("direct_socket"), str) and same_machine(base_url)

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_open

    def connect(self) -> "DirectSession":
        if self.connected:
            return self
        self._drop()
        connection = connect_direct(self.metadata, self.base_url, timeout=self.timeout, token=self.token, spin=spin_for(1), server_spin=SPIN)
        if connection is None:
            raise ConnectionLost(f"the direct socket of {self.base_url} is out of reach")
        try:
            ids, self._slots = run_blocking(opening(1, self.shared_memory, connection.max_message_bytes), connection.call)
            self._id = ids[0]
        except BaseException:
            connection.close_now()
            raise
        self._connection = connection
        return self

    def reset(self, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        self.connect()
        seed = kwargs.pop("seed", None)
        request = BatchReset.message(ids=[self._id], seeds=[seed], options=to_plain(kwargs, keep_arrays=False) or None)
        return single_payload(self._connection.call(request, timeout), self._slots)

    def step(self, action: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        if self._connection is None:
            raise ConnectionLost("not connected: call reset() first")
        columns = {}
        for name, value in action.items():  # (a loop: cheaper than a comprehension, its own call in 3.11)
            columns[name] = [value]
        request = BatchStep.message(ids=[self._id], actions=columns)
        return single_payload(self._connection.call(request, timeout), self._slots)

    def state(self) -> dict[str, Any]:
        if self._connection is None:
            raise ConnectionLost("not connected: call reset() first")
        return self._connection.call(BatchState.model_construct(ids=[self._id])).states[0]

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        slots, self._slots = self._slots, None
        if connection is not None:
            connection.close_now()
        if slots is not None:
            slots.close()

    def close(self) -> None:
        """End the session (idempotent)."""
        self._drop()

