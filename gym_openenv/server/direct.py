"""The direct transport: the batch protocol on a Unix socket, one thread per connection.

For clients on the same machine. A WebSocket request wakes four threads on
the server's side alone (the event loop, a worker, the loop again, and
uvicorn's framing in between); here the thread that reads a request runs its
environment calls itself and writes the reply, so a round trip costs at
most one wake-up on each side, and none while both sides spin (the client
asks for it in its hello; :class:`~gym_openenv.framing.FrameReader`).
Requests and replies are the batch protocol's (:mod:`gym_openenv.server.batch_ws`
handles them, the same code as for ``/ws/batch``), in the frames of
:mod:`gym_openenv.framing`; a new shared block's descriptor goes with the
reply that opened it, so a client in any pid namespace maps it.

The guarantees of the WebSocket driver hold here too:

* **Hung calls.** A call that passes the step timeout is noticed by the
  :class:`_Watchdog`. The connection moves to a new thread, which gives the
  hung session a new environment, runs the rows after it and sends the reply;
  the stuck thread drops its result when its call returns, and the old
  environment is closed only then. A connection has at most
  ``workers_per_client`` threads, stuck ones included: past that, the rows
  are not run (their errors say so).
* **Opening and closing** sessions run on the event loop, as for WebSockets:
  one session table, one capacity, one idle reaper.
* **Auth.** The socket is the owner's only (mode 0600) and the first frame,
  :class:`~gym_openenv.protocol.DirectHello`, must carry the server's token.
"""

import asyncio
import hmac
import itertools
import logging
import operator
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pydantic

from gym_openenv.framing import FrameReader, receive_frame, send_frame
from gym_openenv.protocol import (
    BatchOpened,
    DirectHello,
    DirectWelcome,
    ErrorCode,
    decode_msgpack,
    encode_msgpack,
    error_reply,
)
from gym_openenv.server.batch_ws import _HANDLERS, _NOT_RUN, Plan, _BatchError, _Connection, _Job, _Rows, parse_frame, reply_frame
from gym_openenv.server.host import EnvHost

__all__ = ["DirectListener"]

log = logging.getLogger("gym_openenv.server")

#: Seconds a loop-side call (opening or closing sessions) may take before the connection gives up.
_LOOP_CALL_TIMEOUT = 600.0
#: Seconds a leaving connection waits for its sessions to close.
_CLOSE_TIMEOUT = 30.0
#: The longest a connection's thread spins for the next request, whatever its client asks.
_MAX_SPIN = 0.002
#: a session's environment, read in C
_env_of = operator.attrgetter("env")
#: a run's bookkeeping left for its end (:meth:`_DirectConnection._tidy`): the ticket of its calls
#: (:meth:`EnvHost.calls_started`), its watchdog ticket, and the job to end (None: ended already)
_RunEnd = tuple[int, int | None, _Job | None]


class _TakenOver(Exception):
    """Raised in a connection's stuck thread once the connection has moved to a new thread."""


class _Watchdog:
    """Calls ``on_timeout(*args)`` for every watched call still running past its deadline.

    No lock: every step watches and unwatches a call, and each of these is one
    operation on a dict (a ticket from ``itertools.count``, a store, a pop), done
    in C under the GIL. The patrol reads a copy of the dict (``dict.copy`` runs no
    Python code either: no thread can change the dict meanwhile) and fires a
    ticket only if its own ``pop`` took it, so a call unwatched meanwhile is not
    fired, and none twice."""

    def __init__(self, interval: float):
        self.interval = interval
        self._watched: dict[int, tuple[float, Callable[..., None], tuple[Any, ...]]] = {}
        self._tickets = itertools.count()
        self._stopped = threading.Event()
        threading.Thread(target=self._patrol, name="openenv-direct-watchdog", daemon=True).start()

    def watch(self, seconds: float, on_timeout: Callable[..., None], *args: Any) -> int:
        ticket = next(self._tickets)
        self._watched[ticket] = (time.monotonic() + seconds, on_timeout, args)
        return ticket

    def unwatch(self, ticket: int) -> None:
        self._watched.pop(ticket, None)

    def _patrol(self) -> None:
        while not self._stopped.wait(self.interval):
            now = time.monotonic()
            for ticket, (deadline, callback, args) in self._watched.copy().items():
                if deadline <= now and self._watched.pop(ticket, None) is not None:
                    callback(*args)

    def stop(self) -> None:
        self._stopped.set()


class DirectListener:
    """Accepts direct connections on ``path`` for ``host``, whose event loop is ``loop``."""

    def __init__(self, host: EnvHost, loop: asyncio.AbstractEventLoop, path: str):
        self.host = host
        self.loop = loop
        self.path = path
        self._connections: set["_DirectConnection"] = set()
        self._lock = threading.Lock()
        if os.path.exists(path):
            os.unlink(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)  # created 0600: the socket is as private as the token
        try:
            self._socket.bind(path)
        except OSError:
            self._socket.close()
            raise
        finally:
            os.umask(old_mask)
        self._socket.listen(256)
        timeout = host.settings.step_timeout  # the watchdog only once the socket exists (a failed bind leaves no thread)
        self.watchdog = None if timeout is None else _Watchdog(interval=min(0.05, timeout / 10))
        self._accepting = threading.Thread(target=self._accept, name="openenv-direct-accept", daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._socket.accept()
            except OSError:
                return  # closed by stop()
            connection = _DirectConnection(self, sock)
            with self._lock:
                self._connections.add(connection)
            connection.start(connection.serve)

    def forget(self, connection: "_DirectConnection") -> None:
        with self._lock:
            self._connections.discard(connection)

    def stop(self) -> None:
        """Stop accepting and end every connection (their sessions close with the server)."""
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.hang_up()
        if self.watchdog is not None:
            self.watchdog.stop()
        try:
            os.unlink(self.path)
        except OSError:
            pass


class _DirectConnection:
    """One client's connection; served by one thread at a time (see the module docstring)."""

    def __init__(self, listener: DirectListener, sock: socket.socket):
        self.listener = listener
        self.host = listener.host
        self.loop = listener.loop
        self.sock = sock
        self.batch = _Connection(self.host, "direct connection")
        self.requests: FrameReader | None = None  # after the hello
        self._abandoned: list[dict[str, Any]] = []  # runs given up on (their threads may still be stuck)

    def start(self, work: Callable[[], None]) -> None:
        threading.Thread(target=self._own, args=(work,), name="openenv-direct", daemon=True).start()

    def _own(self, work: Callable[[], None]) -> None:
        """A thread's life on this connection: ``work``, then serving, until the client leaves."""
        try:
            work()
            self._serve()
        except _TakenOver:
            return  # another thread serves the connection now
        except (ConnectionError, OSError, ValueError):
            pass  # the client left, or broke the framing: the connection ends
        except Exception:  # a bug of ours: end this connection (its client sees it closed), keep the server
            log.exception("direct connection failed")
        self._end()

    def serve(self) -> None:
        """The first thread: the hello, then requests."""
        self.sock.settimeout(self.host.settings.header_timeout)
        raw = receive_frame(self.sock, 64 * 1024)
        try:
            hello = DirectHello.model_validate(decode_msgpack(raw))
        except (pydantic.ValidationError, ValueError, TypeError) as e:
            self._send(encode_msgpack(error_reply(ErrorCode.VALIDATION_ERROR, f"the first frame must be a hello: {e}")))
            raise ConnectionError("no hello") from None
        if not self._authorized(hello.token):
            self._send(encode_msgpack(error_reply(ErrorCode.UNAUTHORIZED, "missing or wrong token", hello.seq)))
            raise ConnectionError("unauthorized")
        self.batch.max_reply_bytes = hello.max_reply_bytes
        self._send(encode_msgpack(DirectWelcome(server_id=self.host.server_id, seq=hello.seq).__dict__))
        # An idle connection waits (its sessions are reaped as on WebSockets) in the reader's poll,
        # after a spin if the client asked for one. The hello was read exactly: anything sent
        # after it is still in the socket, for the reader.
        self.sock.setblocking(False)
        self.requests = FrameReader(self.sock, self.host.settings.max_message_bytes, min(hello.spin, _MAX_SPIN))

    def _authorized(self, token: str | None) -> bool:
        expected = self.host.settings.token
        return expected is None or (token is not None and hmac.compare_digest(token.encode(), expected.encode()))

    def _serve(self) -> None:
        while True:
            self._answer(self.requests.read())

    def _answer(self, raw: bytearray) -> None:
        request = parse_frame(raw)
        if isinstance(request, bytes):
            self._send(request)
            return
        seq, typed = request
        handler, is_plan = _HANDLERS[typed.type]
        try:
            if is_plan:
                self._drive(handler(self.batch, typed), seq)
                return
            reply = self._on_loop(handler(self.batch, typed))
        except _BatchError as e:
            self._send(encode_msgpack(error_reply(e.code, str(e), seq)))
            return
        # A new shared block goes with its reply: the client maps the descriptor itself, from
        # any pid namespace or user (a container's server), with no /proc lookup.
        block_fd = reply.shm["fd"] if isinstance(reply, BatchOpened) and reply.shm else None
        self._send(reply_frame(self.batch, reply, seq), None if block_fd is None else [block_fd])

    def _drive(self, plan: Plan, seq: int | None, results: list[Any] | None = None) -> None:
        """Run ``plan`` (from its start, or on from ``results`` of its current job) and send its reply."""
        after_reply: list[_RunEnd] = []  # bookkeeping the reply need not wait for
        try:
            job = next(plan) if results is None else plan.send(results)
            while True:
                job.begin()
                job = plan.send(self._run_rows(plan, seq, job, _Rows(job.calls), 0, [], after_reply))
        except StopIteration as done:
            send_frame(self.sock, reply_frame(self.batch, done.value, seq))
        except _BatchError as e:
            self._send(encode_msgpack(error_reply(e.code, str(e), seq)))
        finally:
            self._tidy(after_reply)

    def _run_rows(
        self, plan: Plan, seq: int | None, job: _Job, rows: _Rows, start: int, abandoned: list[dict[str, Any]], after_reply: list[_RunEnd]
    ) -> list[Any]:
        """Run ``rows`` from ``start`` on this thread; the job's results once every row ran.

        The end of the run's bookkeeping (:meth:`_tidy`) goes into ``after_reply`` when all
        went well: the client has its reply a few microseconds sooner."""
        run: dict[str, Any] = {"abandoned": False, "current": None, "finished": False, "loop": self.loop}
        watchdog, timeout = self.listener.watchdog, self.host.settings.step_timeout
        # (the arguments of _give_up are passed, not captured by a closure: a closure over
        # them costs a cell per variable, on every request)
        ticket = None if watchdog is None else watchdog.watch(timeout, self._give_up, plan, seq, job, rows, run, abandoned, after_reply)
        calls = self.host.calls_started(list(map(_env_of, job.sessions)))  # a close of these environments (server shutdown) waits for the calls
        try:
            rows._work(run, start)
        except BaseException:
            self._tidy([(calls, ticket, None)])
            raise
        if run["abandoned"]:  # this thread's call hung, and the connection went on without it (and ends the job)
            self._tidy([(calls, ticket, None)])
            raise _TakenOver
        if rows.hung:  # new environments are built on the event loop, as for WebSockets
            self._tidy([(calls, ticket, job)])
            return self._on_loop(self.batch.settle(job, rows, abandoned))
        after_reply.append((calls, ticket, job))
        return job.outcome(rows.results, (), timeout)

    def _tidy(self, ends: list[_RunEnd]) -> None:
        """The end of runs' bookkeeping: their calls counted out (environments whose close
        waited for them are closed), their watch ended, and their job's end (if given)."""
        for calls, ticket, job in ends:
            for env in self.host.calls_finished(calls):  # a close that waited for these calls
                self.loop.call_soon_threadsafe(self.host.close_later, env)
            if ticket is not None:
                self.listener.watchdog.unwatch(ticket)
            if job is not None:
                job.end()

    def _give_up(
        self, plan: Plan, seq: int | None, job: _Job, rows: _Rows, run: dict[str, Any], abandoned: list[dict[str, Any]], after_reply: list[_RunEnd]
    ) -> None:
        """On the watchdog: ``run``'s call hung. Move the connection to a new thread that goes on after it."""
        with rows.lock:
            if run["finished"] or run["abandoned"]:
                return
            run["abandoned"] = True
            current = run["current"]
            finished = current is not None and rows.results[current] is not _NOT_RUN
            # The stuck thread touches its after_reply list only once its call returns: the
            # bookkeeping of the plan's earlier jobs moves to the new thread with the rest.
            earlier, after_reply[:] = list(after_reply), []
        abandoned.append(run)
        self._abandoned = [r for r in self._abandoned if not r["finished"]] + [run]
        if current is not None and not finished:
            rows.hung.append(current)
        start = 0 if current is None else current + 1
        stuck = sum(1 for r in self._abandoned if not r["finished"])

        def go_on() -> None:
            after_reply: list[_RunEnd] = earlier
            try:
                if stuck < self.host.settings.workers_per_client:
                    results = self._run_rows(plan, seq, job, rows, start, abandoned, after_reply)
                else:  # every thread this connection may have is stuck: the rest is not run
                    job.end()
                    results = self._on_loop(self.batch.settle(job, rows, abandoned))
            finally:
                self._tidy(after_reply)
            self._drive(plan, seq, results)

        self.start(go_on)

    def _on_loop(self, coro: Any) -> Any:
        """Run ``coro`` on the server's event loop (session table, new environments) and wait."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(_LOOP_CALL_TIMEOUT)

    def _send(self, frame: bytes, fds: list[int] | None = None) -> None:
        send_frame(self.sock, frame, fds)

    def hang_up(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _end(self) -> None:
        self.listener.forget(self)
        try:
            self.sock.close()
        except OSError:
            pass
        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self.batch.close_all(), self.loop).result(_CLOSE_TIMEOUT)
            except Exception:  # the server is shutting down: its session table closes them all
                pass

