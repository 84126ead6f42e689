"""How to reach one environment server: its address, its token, its health.

Every provider, the session pool and the client reach servers through an
:class:`Endpoint`, so a Unix socket, a bearer token or a health wait is
handled the same way everywhere.

Example:
    >>> unix = Endpoint.parse("http+unix:///tmp/openenv/server.sock", token="s3cret")
    >>> unix.uds, unix.http_url("/health"), unix.ws_url("/ws")
    ('/tmp/openenv/server.sock', 'http://localhost/health', 'ws://localhost/ws')
    >>> unix.request_headers()
    {'Authorization': 'Bearer s3cret'}
    >>> space = Endpoint.parse("https://owner-echo.hf.space/")
    >>> space.url, space.ws_url("/ws"), space.is_local
    ('https://owner-echo.hf.space', 'wss://owner-echo.hf.space/ws', False)
    >>> Endpoint.parse("http://127.0.0.1:8000").is_local
    True
"""

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect, unix_connect

from gym_openenv.errors import ConnectionLost, OpenEnvError, ServerStartError, Unauthorized

__all__ = ["Endpoint"]

_SCHEMES = ("http", "https", "http+unix")
_UNAUTHORIZED = (401, 403)


@dataclass(frozen=True)
class Endpoint:
    """A server's base URL (``http://``, ``https://`` or ``http+unix:///path.sock``),
    the bearer token it wants, and extra request headers. Build it with :meth:`parse`."""

    url: str
    token: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, token: str | None = None, headers: Mapping[str, str] | None = None) -> "Endpoint":
        """Check ``url`` and build the endpoint; a trailing ``/`` is dropped."""
        scheme = urlsplit(url).scheme if isinstance(url, str) else None
        if scheme not in _SCHEMES:
            raise ValueError(f"url must start with http://, https:// or http+unix://, got {url!r}")
        return cls(url.rstrip("/"), token or None, dict(headers or {}))

    @property
    def uds(self) -> str | None:
        """The Unix socket path, for ``http+unix://`` URLs."""
        parts = urlsplit(self.url)
        return parts.path if parts.scheme == "http+unix" else None

    @property
    def is_local(self) -> bool:
        """Whether the server is on this machine (a Unix socket or a loopback address)."""
        host = urlsplit(self.url).hostname or ""
        return self.uds is not None or host in ("localhost", "::1") or host.startswith("127.")

    def http_url(self, path: str) -> str:
        return f"http://localhost{path}" if self.uds else f"{self.url}{path}"

    def ws_url(self, path: str) -> str:
        if self.uds:
            return f"ws://localhost{path}"
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}{path}"

    def request_headers(self) -> dict[str, str]:
        """The headers every request sends: the extra ones and the bearer token."""
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    # HTTP

    def http_client(self, timeout: float) -> httpx.Client:
        """A blocking httpx client for this server (paths via :meth:`http_url`)."""
        transport = httpx.HTTPTransport(uds=self.uds) if self.uds else None
        return httpx.Client(transport=transport, timeout=timeout, headers=self.request_headers())

    def async_http_client(self, timeout: float) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=self.uds) if self.uds else None
        return httpx.AsyncClient(transport=transport, timeout=timeout, headers=self.request_headers())

    async def get_json(self, path: str, timeout: float = 30.0) -> Any:
        """GET ``path`` (``/schema``, ``/metadata``...) and decode it.

        Raises:
            Unauthorized: HTTP 401/403.  ConnectionLost: no answer.  OpenEnvError: another status.
        """
        url = self.http_url(path)
        async with self.async_http_client(timeout) as http:
            try:
                response = await http.get(url)
            except httpx.HTTPError as e:
                raise ConnectionLost(f"cannot reach {self.url}{path}: {type(e).__name__}: {e}") from e
        self.raise_for_auth(response.status_code)
        if response.status_code != 200:
            raise OpenEnvError(f"GET {self.url}{path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def health(self, timeout: float = 5.0) -> bool:
        """Whether ``/health`` answers 200 now."""
        try:
            with self.http_client(timeout) as http:
                return http.get(self.http_url("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(
        self,
        timeout: float,
        *,
        stopped: Callable[[], str | None] = lambda: None,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
    ) -> int:
        """Poll ``/health`` until it answers 200, waiting ``backoff`` seconds between
        attempts, doubled each time up to ``max_backoff``; returns the number of attempts.

        Args:
            stopped: says why the server can no longer come up (its process exited,
                its container died), or None while it may.

        Raises:
            Unauthorized: the server wants another token (HTTP 401/403).
            ServerStartError: not healthy within ``timeout`` seconds, or ``stopped()`` said why.
        """
        deadline = time.monotonic() + timeout
        delay, attempts, last = backoff, 0, "no attempt"
        with self.http_client(min(10.0, timeout)) as http:
            while True:
                attempts += 1
                try:
                    status = http.get(self.http_url("/health")).status_code
                    if status == 200:
                        return attempts
                    self.raise_for_auth(status)
                    last = f"HTTP {status}"
                except httpx.HTTPError as e:
                    last = f"{type(e).__name__}: {e}"
                reason = stopped()
                if reason is not None:
                    raise ServerStartError(reason)
                if time.monotonic() + delay > deadline:
                    raise ServerStartError(
                        f"{self.url} did not become healthy within {timeout}s ({attempts} attempts; last: {last})"
                    )
                time.sleep(delay)
                delay = min(delay * 2, max_backoff)

    def raise_for_auth(self, status: int) -> None:
        """Raise :class:`~gym_openenv.Unauthorized` if ``status`` is the server refusing the token."""
        if status in _UNAUTHORIZED:
            given = "a wrong bearer token" if self.token else "no bearer token"
            raise Unauthorized(f"{self.url} refused {given} (HTTP {status}); pass token= or set OPENENV_TOKEN")

    # WebSocket

    async def connect(self, path: str, *, timeout: float, max_size: int) -> ClientConnection:
        """Open a WebSocket to ``path``.

        Raises:
            Unauthorized: the handshake was refused with HTTP 401/403.
            ConnectionLost: no connection (refused, dropped, timed out).
        """
        url = self.ws_url(path)
        options = dict(open_timeout=timeout, max_size=max_size, additional_headers=self.request_headers(), compression=None)
        try:
            if self.uds:
                return await unix_connect(self.uds, url, **options)
            return await connect(url, **options)
        except websockets.exceptions.InvalidStatus as e:
            self.raise_for_auth(e.response.status_code)
            raise ConnectionLost(f"cannot connect to {url}: {e}") from e
        except (OSError, websockets.exceptions.InvalidHandshake, asyncio.TimeoutError) as e:
            raise ConnectionLost(f"cannot connect to {url}: {type(e).__name__}: {e}") from e
