"""HTTP limits that hold however a client sends: body size, slow heads, stalled bodies.

* :class:`BodyLimit` (ASGI middleware): a request body over ``max_bytes`` gets
  413 whether it announces its length (``Content-Length``, refused before a byte
  is read) or not (``Transfer-Encoding: chunked``, refused as soon as the count
  passes the limit); a body that pauses longer than ``body_timeout`` between two
  parts gets 408. Either way the connection is closed, so the rest is never read.
* :func:`http_protocol`: uvicorn's HTTP protocol with a deadline for the request
  head. uvicorn only times out idle keep-alive connections; one that sends half
  a request line and stops would be held forever. Ours is closed once
  ``header_timeout`` passes without a complete head.
"""

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

__all__ = ["BodyLimit", "http_protocol"]


class _Refused(HTTPException):
    """Raised from ``receive``; FastAPI's handler turns it into its status, and
    "Connection: close" keeps the unread rest of the body from being parsed as a request."""

    def __init__(self, status: int, detail: str):
        super().__init__(status_code=status, detail=detail, headers={"connection": "close"})


class BodyLimit:
    """Refuse HTTP bodies over ``max_bytes`` (413) or stalled past ``body_timeout`` (408)."""

    def __init__(self, app: Any, max_bytes: int, body_timeout: float):
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body over {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _respond(scope, receive, send, _Refused(413, too_large))
            return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise _Refused(408, f"request body stalled for {self.body_timeout}s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _Refused(413, too_large)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _Refused as e:  # raised where no handler turned it into a response
            if started:  # too late for a status: the connection goes
                raise
            await _respond(scope, receive, send, e)


async def _respond(scope: dict, receive: Any, send: Any, refusal: _Refused) -> None:
    response = JSONResponse({"detail": refusal.detail}, status_code=refusal.status_code, headers=refusal.headers)
    await response(scope, receive, send)


def http_protocol(header_timeout: float) -> type:
    """uvicorn's HTTP protocol class (httptools, else h11) with a request-head deadline."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # no httptools on this platform
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class HeadDeadline(Base):
        """Closes a connection whose request head is not complete ``header_timeout``
        seconds after the connection opened or the request began."""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_of = self.cycle  # the request whose head we last saw complete
            self._arm_head_deadline()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._head_of:  # a new request's head is complete
                self._head_of = self.cycle
                self._disarm_head_deadline()
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm_head_deadline()  # bytes of a head that is not complete yet

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._disarm_head_deadline()  # the WebSocket protocol takes the connection
            self._head_of = None
            self._upgraded = True
            super().handle_websocket_upgrade(*args)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

        def _arm_head_deadline(self) -> None:
            if getattr(self, "_upgraded", False):
                return
            self._head_timer = self.loop.call_later(header_timeout, self._head_overdue)

        def _disarm_head_deadline(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_overdue(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadDeadline
