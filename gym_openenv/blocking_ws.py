"""OpenEnv JSON sessions driven from the caller's thread, with no event loop in between.

OpenEnv's JSON protocol is the fallback for servers that offer nothing else
(foreign OpenEnv servers; ``protocol="openenv"``). :class:`~gym_openenv.client.AsyncSession`
runs such a session on the shared event loop's thread, so every call hops there
and back. Here the caller's thread writes each request and reads its reply
itself: websockets' sans-I/O protocol (:class:`websockets.client.ClientProtocol`)
on a non-blocking socket this module owns, and one ``poll`` over every socket a
call waits for. A vector env sends to all of its sessions, then collects the
replies (:func:`receive_all`).

* :class:`BlockingWebSocket`: one WebSocket connection (handshake, frames, pings, close).
* :class:`BlockingSession`: one OpenEnv session on it; :class:`~gym_openenv.client.AsyncSession`'s
  calls, blocking, plus :meth:`~BlockingSession.send` to start a call that
  :func:`receive_all` finishes.
* :func:`connect_all` / :func:`close_all`: open or end many sessions at once.

Servers ping their WebSocket clients and drop one that does not answer in time
(uvicorn's default: a ping every 20 s, answered within 20 s). A caller that
computes between calls reads nothing meanwhile, so one daemon thread for the
process (:class:`_Keepalive`) answers the pings of connections left alone for a
second. It is the only other thread involved, and never on the way of a call.

Only ``ws://`` and Unix sockets without a proxy: :func:`served_without_loop`
says whether a server qualifies. ``wss://`` (TLS) and proxied servers keep
:class:`~gym_openenv.client.AsyncSession`, whose websockets client does both.

Example:
    >>> from gym_openenv.providers import LocalProcessProvider
    >>> with LocalProcessProvider("gym_openenv.servers.echo.server.environment:EchoEnvironment") as server:
    ...     sessions = [BlockingSession(server.base_url, timeout=30) for _ in range(2)]
    ...     connect_all(sessions, timeout=30)
    ...     _ = [s.reset() for s in sessions]
    ...     for s, text in zip(sessions, ["a", "bc"]):
    ...         s.send({"type": "step", "data": {"message": text}})
    ...     replies = receive_all(sessions, timeout=30)
    ...     close_all(sessions)
    >>> [r["data"]["observation"]["echoed_message"] for r in replies]
    ['a', 'bc']
"""

import select
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import State
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from gym_openenv.client import DEFAULT_TIMEOUT, MAX_MESSAGE_BYTES, openenv_reply
from gym_openenv.endpoint import Endpoint
from gym_openenv.errors import CapacityReached, ConnectionLost, RequestTimeout, ServerError
from gym_openenv.protocol import encode_json
from gym_openenv.spaces import to_plain

__all__ = ["BlockingSession", "BlockingWebSocket", "close_all", "connect_all", "receive_all", "served_without_loop"]

#: Bytes one ``recv`` asks for: any small reply at once, and below the size at which
#: malloc maps fresh pages for every buffer.
_READ_SIZE = 64 * 1024
#: A connection nobody read for this long gets its pings answered by :class:`_Keepalive`.
_KEEPALIVE_AFTER = 1.0
#: How long closing waits for servers to close their side (websockets' own close_timeout).
_CLOSE_WAIT = 10.0
#: How long a refused session's error frame may take to arrive after a failed send.
_LEFT_BEHIND_WAIT = 1.0
_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
_CLOSED_STATES = (State.CLOSING, State.CLOSED)


def served_without_loop(endpoint: Endpoint) -> bool:
    """Whether :class:`BlockingSession` can reach this server: a Unix socket, or
    ``ws://`` that no proxy setting (``$http_proxy``...) applies to."""
    if endpoint.uds:
        return True
    uri = parse_uri(endpoint.ws_url("/ws"))
    return not uri.secure and get_proxy(uri) is None


class BlockingWebSocket:
    """A WebSocket client connection whose socket only the calling thread reads and writes.

    Messages received are queued until :meth:`next_message` takes them; pings are
    answered whenever the socket is read. Reads and writes never block: the caller
    waits in ``poll`` on :meth:`fileno` (:meth:`wait`, or many at once in :func:`receive_all`).
    Hold :attr:`lock` around every use (the keepalive thread takes it too).
    """

    def __init__(self, endpoint: Endpoint, path: str, max_size: int = MAX_MESSAGE_BYTES):
        self.endpoint = endpoint
        self.url = endpoint.ws_url(path)
        self._uri = parse_uri(self.url)
        self._protocol = ClientProtocol(self._uri, max_size=max_size)
        self._sock: socket.socket | None = None
        self._messages: deque[bytes] = deque()
        self._fragments: list[bytes] = []
        self._response: Response | None = None
        #: Why the connection is closed (None while it is open or opening).
        self.closed_because: str | None = None
        self.lock = threading.Lock()
        self.last_read = time.monotonic()

    # opening

    def start(self, timeout: float) -> None:
        """Connect the socket (blocking, up to ``timeout``) and send the handshake request;
        the response is read like any reply (:attr:`opened`, :meth:`check_opened`)."""
        request = self._protocol.connect()
        request.headers.update(self.endpoint.request_headers())
        request.headers.setdefault("User-Agent", USER_AGENT)
        self._protocol.send_request(request)
        try:
            if self.endpoint.uds:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(timeout)
                    sock.connect(self.endpoint.uds)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((self._uri.host, self._uri.port), timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # requests are small: no waiting for acks
        except OSError as e:
            self._closed(f"{type(e).__name__}: {e}")
            raise ConnectionLost(f"cannot connect to {self.url}: {type(e).__name__}: {e}") from e
        sock.setblocking(False)
        self._sock = sock
        self._write()
        _Keepalive.watch(self)

    @property
    def opened(self) -> bool:
        """Whether the server's handshake response came (accepting or refusing)."""
        return self._response is not None or self.closed_because is not None

    def check_opened(self) -> None:
        """Raise unless the handshake succeeded.

        Raises:
            Unauthorized: the server refused the handshake with HTTP 401/403.
            ConnectionLost: it refused otherwise, or closed the connection.
        """
        error = self._protocol.handshake_exc
        if error is not None:
            if isinstance(error, InvalidStatus):
                self.endpoint.raise_for_auth(error.response.status_code)
            self.close()
            raise ConnectionLost(f"cannot connect to {self.url}: {error}") from error
        if self._response is None:
            raise ConnectionLost(f"cannot connect to {self.url}: {self.closed_because}")

    # reading and writing

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> None:
        """Take in what the socket holds, without waiting: messages into the queue,
        pings and a server's close answered. Marks the connection closed when it is."""
        if self._sock is None:
            return
        try:
            data = self._sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:  # reset by the peer
            self._closed(f"{type(e).__name__}: {e}")
            return
        self.last_read = time.monotonic()
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        for event in self._protocol.events_received():
            if isinstance(event, Response):
                self._response = event
            elif event.opcode in _DATA_OPCODES:
                self._fragments.append(event.data)
                if event.fin:
                    self._messages.append(b"".join(self._fragments) if len(self._fragments) > 1 else self._fragments[0])
                    self._fragments = []
        self._write()  # pongs, the reply to a close, a failed handshake's end
        if not data or self._protocol.state in _CLOSED_STATES or self._protocol.handshake_exc is not None:
            self._closed(self._why_closed())

    def next_message(self) -> bytes | None:
        """The oldest message received and not yet taken, if any."""
        return self._messages.popleft() if self._messages else None

    @property
    def has_messages(self) -> bool:
        return bool(self._messages)

    def send_text(self, text: str, deadline: float) -> None:
        """Send one text message; waits (until ``deadline``, a ``time.monotonic()``) only
        while the server's receive buffer is full.

        Raises:
            ConnectionLost: the connection is closed, or closes while sending.
            RequestTimeout: the server took nothing in until ``deadline``.
        """
        if self.closed_because is not None:
            raise ConnectionLost(f"connection to the server closed: {self.closed_because}")
        self._protocol.send_text(text.encode())
        self._write(deadline)

    def _write(self, deadline: float | None = None) -> None:
        for data in self._protocol.data_to_send():
            if not data:  # the protocol is done with the connection: end our side
                self._closed(self._why_closed())
                return
            try:
                self._send_all(data, deadline)
            except OSError as e:
                self._closed(f"{type(e).__name__}: {e}")
                if deadline is not None:
                    raise ConnectionLost(f"connection to the server closed: {self.closed_because}") from e
                return  # answering a ping or a close: the next call finds the connection closed

    def _send_all(self, data: bytes, deadline: float | None) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view) :]
            except BlockingIOError:
                # Only a large request outruns the server's buffer; a pong or a close is
                # never worth a long wait (keepalive and close pass no deadline).
                left = (deadline if deadline is not None else time.monotonic() + 1.0) - time.monotonic()
                if left <= 0 or not _poll([self._sock], select.POLLOUT, left):
                    self._closed("a send did not go through in time")
                    raise RequestTimeout(f"the server took no data within the timeout; the connection to {self.url} was closed") from None

    def wait(self, deadline: float) -> bool:
        """Wait until the socket has something to read, or ``deadline``; whether it has."""
        left = deadline - time.monotonic()
        return left > 0 and bool(_poll([self._sock], select.POLLIN, left))

    # closing

    def _why_closed(self) -> str:
        protocol = self._protocol
        if protocol.state is State.CLOSED:
            return str(protocol.close_exc)
        if protocol.close_rcvd is not None:
            return f"received {protocol.close_rcvd}"
        if protocol.handshake_exc is not None:
            return f"handshake failed: {protocol.handshake_exc}"
        return "the server closed the connection"

    def _closed(self, why: str) -> None:
        if self.closed_because is None:
            self.closed_because = why
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def start_closing(self) -> None:
        """Send a close frame (the server answers it and ends the connection)."""
        if self.closed_because is None and self._protocol.state is State.OPEN:
            self._protocol.send_close()
            self._write()

    def close(self) -> None:
        """Close the socket now (idempotent); unread messages stay readable."""
        self._closed("closed by the client")


class BlockingSession:
    """One OpenEnv session over ``/ws``, driven from the caller's thread.

    :class:`~gym_openenv.client.AsyncSession`'s interface, blocking: ``reset``,
    ``step``, ``state`` and ``close`` with OpenEnv payload dicts. For many sessions at
    once: :meth:`send` to each, then :func:`receive_all`. A connection that failed (lost,
    timed out, refused, garbled) is reopened, with a new session, at the next ``reset``;
    any other call raises :class:`~gym_openenv.ConnectionLost` (as on
    :class:`~gym_openenv.client.BatchSession`): an episode never goes on in a new session.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None):
        self.base_url = base_url
        self.timeout = timeout
        self.token = token
        self.endpoint = Endpoint.parse(base_url, token)
        self._ws: BlockingWebSocket | None = None
        self._awaiting = False  # a request was sent and its reply not yet taken
        self._lost: str | None = None  # why the last connection failed, until a reset reopens one

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ws.closed_because is None

    def connect(self) -> "BlockingSession":
        """Open the connection, unless there is one (a connection the server closed stays
        until a call finds out, and raises)."""
        if self._ws is None:
            connect_all([self], self.timeout)
        return self

    def send(self, message: dict[str, Any]) -> None:
        """Send one request (connecting first if needed); :meth:`receive` or :func:`receive_all` takes its reply.

        Raises:
            ServerError: the server refused the session before (``CAPACITY_REACHED``...).
            ConnectionLost: the connection is gone (the next ``reset`` opens a new one).
        """
        if self._awaiting:
            raise RuntimeError("BlockingSession.send: the reply to the previous request was not received")
        if self._ws is None and self._lost is not None and message.get("type") != "reset":
            raise ConnectionLost(f"{self._lost}; the session is gone, reset() starts a new one")
        self.connect()
        ws = self._ws
        with ws.lock:
            try:
                if ws.has_messages:  # nothing is due before a request: a refusal (read below), or garbage
                    raise ConnectionLost(f"the server sent a frame no request asked for ({ws.url})")
                ws.send_text(encode_json(message), time.monotonic() + self.timeout)
            except (ConnectionLost, RequestTimeout) as e:
                refused = self._left_behind_error(ws)
                self._drop(lost=str(refused or e))
                if refused is not None:
                    raise refused from e
                raise
        self._awaiting = True

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The reply to the request :meth:`send` sent (decoded by :func:`~gym_openenv.client.openenv_reply`).

        Raises:
            ServerError: the server's error reply.  ConnectionLost, RequestTimeout: the
            connection failed or stayed silent (the next ``reset`` opens a new one).
        """
        reply = receive_all([self], timeout)[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def _take_reply(self) -> "dict[str, Any] | BaseException | None":
        """The reply, if it was read (holding the connection's lock); None while it was not."""
        ws = self._ws
        raw = ws.next_message()
        if raw is None:
            if ws.closed_because is None:
                return None
            self._awaiting = False
            lost = ConnectionLost(f"connection to the server closed: {ws.closed_because}")
            self._drop(lost=str(lost))
            return lost
        self._awaiting = False
        try:
            return openenv_reply(raw)
        except (ConnectionLost, CapacityReached) as e:
            # Garbage cannot be followed by anything sound; a refused session is closed by its server.
            self._drop(lost=str(e))
            return e
        except ServerError as e:
            return e

    def _timed_out(self, waited: float) -> RequestTimeout:
        self._awaiting = False
        timed_out = RequestTimeout(f"no reply from the server within {waited}s")
        self._drop(lost=str(timed_out))  # its reply may still come, and must never be read as the next one's
        return timed_out

    def _left_behind_error(self, ws: BlockingWebSocket) -> ServerError | None:
        """The error reply a server sent just before it closed the connection, if one is unread.

        OpenEnv servers refuse a session (``CAPACITY_REACHED``) by sending an error and
        closing; a request sent after that fails, but the error frame says why.
        """
        deadline = time.monotonic() + _LEFT_BEHIND_WAIT
        while True:
            ws.read()
            raw = ws.next_message()
            if raw is not None:
                try:
                    openenv_reply(raw)
                except ServerError as e:
                    return e
                except ConnectionLost:
                    return None
                continue
            if ws.closed_because is not None or not ws.wait(deadline):
                return None

    def reset(self, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.call({"type": "reset", "data": to_plain(kwargs, keep_arrays=False)}, timeout)["data"]

    def step(self, action: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return self.call({"type": "step", "data": action}, timeout)["data"]

    def state(self) -> dict[str, Any]:
        return self.call({"type": "state"})["data"]

    def call(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``message`` and wait for its reply."""
        self.send(message)
        return self.receive(timeout)

    def _drop(self, lost: str | None = None) -> None:
        """Close the connection; ``lost``: why it failed (the next call but a reset raises it)."""
        self._lost = lost
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def close(self) -> None:
        """End the session (idempotent)."""
        close_all([self])


def connect_all(sessions: Iterable[BlockingSession], timeout: float) -> None:
    """Open the connections of ``sessions`` that are not open: every handshake sent, then
    the responses awaited together (up to ``timeout``).

    Raises:
        Unauthorized, ConnectionLost: the first failure (the other connections stay open).
    """
    deadline = time.monotonic() + timeout
    opening = []
    failure: BaseException | None = None
    for session in sessions:
        if session._ws is not None:
            continue
        session._awaiting = False
        ws = BlockingWebSocket(session.endpoint, "/ws")
        try:
            with ws.lock:
                ws.start(timeout)
        except ConnectionLost as e:
            failure = failure or e
            continue
        session._ws = ws
        opening.append(session)
    for session, outcome in zip(opening, _wait_for(opening, _handshake_done, deadline)):
        if outcome is None:
            failure = failure or ConnectionLost(f"cannot connect to {session._ws.url}: no handshake response within {timeout}s")
            session._drop()
            continue
        try:
            session._ws.check_opened()
        except BaseException as e:
            session._drop()
            failure = failure or e
    if failure is not None:
        raise failure


def _handshake_done(session: BlockingSession) -> "bool | None":
    return True if session._ws.opened else None


def receive_all(sessions: list[BlockingSession], timeout: float | None = None) -> list["dict[str, Any] | BaseException"]:
    """The replies to the requests :meth:`BlockingSession.send` sent on ``sessions``, in
    their order, waiting for all of them together (``timeout``: the whole wait; default:
    the first session's). A session's failure is its item: its error reply
    (:class:`~gym_openenv.ServerError`), or :class:`~gym_openenv.ConnectionLost` /
    :class:`~gym_openenv.RequestTimeout` (that session's connection is then dropped).
    """
    if not sessions:
        return []
    wait = timeout or sessions[0].timeout
    for session in sessions:
        if not session._awaiting:
            raise RuntimeError("receive_all: a session has no request waiting for its reply")
    replies = _wait_for(sessions, BlockingSession._take_reply, time.monotonic() + wait)
    return [session._timed_out(wait) if reply is None else reply for session, reply in zip(sessions, replies)]


def close_all(sessions: Iterable[BlockingSession], wait: float = _CLOSE_WAIT) -> None:
    """End ``sessions``: OpenEnv's ``close`` and a close frame to each, then up to ``wait``
    seconds for the servers to close their side (a session's slot is free once they did)."""
    closing = []
    for session in sessions:
        ws = session._ws
        if ws is None:
            continue
        with ws.lock:
            try:
                if ws.closed_because is None:
                    ws.send_text(encode_json({"type": "close"}), time.monotonic() + min(wait, session.timeout))
                ws.start_closing()
            except (ConnectionLost, RequestTimeout):
                pass  # the server is gone: the session is over either way
        closing.append(session)
    _wait_for(closing, _closed, time.monotonic() + wait)
    for session in closing:
        session._awaiting = False
        session._drop()


def _closed(session: BlockingSession) -> "bool | None":
    ws = session._ws
    while ws.next_message() is not None:
        pass  # replies nobody waits for any more
    return True if ws.closed_because is not None else None


def _wait_for(sessions: list[BlockingSession], look: Any, deadline: float) -> list[Any]:
    """``look(session)`` of each session once it is not None, reading their sockets as
    ``poll`` finds them readable, until ``deadline``; None for a session whose look never
    came out. ``look`` does no I/O: it looks at what the connection has read.

    Each connection's lock is held for the whole wait: the keepalive thread leaves them
    alone (it would read what this wait polls for). What it read before is looked at first.
    """
    results: list[Any] = [None] * len(sessions)
    held = []
    try:
        for session in sessions:
            session._ws.lock.acquire()
            held.append(session._ws)
        pending: dict[int, int] = {}  # fd -> position in sessions
        for i, session in enumerate(sessions):
            results[i] = look(session)
            if results[i] is None:
                pending[session._ws.fileno()] = i
        if not pending:
            return results
        poller = select.poll()  # not select(): it fails on descriptors past 1023
        for fd in pending:
            poller.register(fd, select.POLLIN)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                i = pending[fd]
                sessions[i]._ws.read()
                results[i] = look(sessions[i])
                if results[i] is not None:
                    poller.unregister(fd)
                    del pending[fd]
        return results
    finally:
        for ws in held:
            ws.lock.release()


def _poll(socks: list[socket.socket], events: int, seconds: float) -> list[tuple[int, int]]:
    poller = select.poll()  # not select(): it fails on descriptors past 1023
    for sock in socks:
        poller.register(sock, events)
    return poller.poll(seconds * 1000)


class _Keepalive:
    """One daemon thread that reads connections nobody has read for :data:`_KEEPALIVE_AFTER`
    seconds, so their servers' pings get answered while the caller computes.

    It only ever takes a connection's lock without waiting: a connection in use is
    skipped (its user reads it). What it reads stays queued for the user.
    """

    _connections: "weakref.WeakSet[BlockingWebSocket]" = weakref.WeakSet()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def watch(cls, ws: BlockingWebSocket) -> None:
        with cls._lock:
            cls._connections.add(ws)
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._run, name="gym-openenv-ws-keepalive", daemon=True)
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        while True:
            time.sleep(_KEEPALIVE_AFTER / 2)
            with cls._lock:
                connections = list(cls._connections)
            now = time.monotonic()
            for ws in connections:
                if ws.closed_because is not None:
                    with cls._lock:
                        cls._connections.discard(ws)
                elif now - ws.last_read >= _KEEPALIVE_AFTER and ws.lock.acquire(blocking=False):
                    try:
                        ws.read()
                    finally:
                        ws.lock.release()
