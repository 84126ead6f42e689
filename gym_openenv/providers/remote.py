"""A server someone else runs: any OpenEnv server at a URL, a Hugging Face Space included.

Example:
    >>> provider = RemoteProvider("https://owner-space.hf.space", token="hf_...")   # doctest: +SKIP
    >>> env = gym.make("openenv/remote-v0", provider=provider)                      # doctest: +SKIP
    >>> hf_space_url("openenv/echo-env")
    'https://openenv-echo-env.hf.space'

:meth:`~RemoteProvider.start` waits for ``/health`` with exponential backoff
(a Space may be waking up, a pod may be scheduling) and sends the bearer
token with every request; :meth:`~RemoteProvider.stop` only forgets the
server: it was not ours to stop.
"""

import os
import re
import time

import httpx

from gym_openenv.errors import ServerStartError, Unauthorized
from gym_openenv.providers.base import Provider

__all__ = ["RemoteProvider", "hf_space_url"]


def hf_space_url(space: str) -> str:
    """The direct URL of a Hugging Face Space, ``"owner/name"`` -> ``https://owner-name.hf.space``.

    Spaces serve under that host (lower case, ``_`` and ``.`` become ``-``); the
    ``huggingface.co/spaces/...`` page only embeds it.
    """
    space = space.removeprefix("https://huggingface.co/spaces/").strip("/")
    owner, sep, name = space.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"space must be 'owner/name', got {space!r}")
    return "https://" + re.sub(r"[_.]", "-", f"{owner}-{name}".lower()) + ".hf.space"


class RemoteProvider(Provider):
    """Connect to a running OpenEnv server.

    Args:
        url: its base URL (``http(s)://host:port``, ``http+unix:///path.sock``).
        token: bearer token sent with the health checks (default ``$OPENENV_TOKEN``;
            the environment sends it on every request).
        connect_timeout: total seconds to keep retrying ``/health``.
        backoff: first delay between attempts; it doubles up to ``max_backoff``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        connect_timeout: float = 60.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ):
        if not re.match(r"^(https?|http\+unix)://", url):
            raise ValueError(f"url must start with http://, https:// or http+unix://, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("OPENENV_TOKEN")
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.attempts = 0

    def start(self) -> str:
        if self.base_url is not None:
            return self.base_url
        deadline = time.monotonic() + self.connect_timeout
        delay, last_error = self.backoff, "no attempt"
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                status = self._get("/health", timeout=min(10.0, self.connect_timeout)).status_code
                if status == 200:
                    self.base_url = self.url
                    return self.base_url
                last_error = f"HTTP {status}"
                if status in (401, 403):
                    raise Unauthorized(f"{self.url}: the server requires a bearer token (HTTP {status}); pass token= or set OPENENV_TOKEN")
            except httpx.HTTPError as e:
                last_error = f"{type(e).__name__}: {e}"
            if time.monotonic() + delay > deadline:
                raise ServerStartError(f"{self.url} did not become healthy within {self.connect_timeout}s ({self.attempts} attempts; last: {last_error})")
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    def _get(self, path: str, timeout: float) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.url.startswith("http+unix://"):
            transport = httpx.HTTPTransport(uds=self.url.removeprefix("http+unix://"))
            base = "http://localhost"
        else:
            transport, base = None, self.url
        with httpx.Client(transport=transport, timeout=timeout, headers=headers) as http:
            return http.get(base + path)

    def health(self, timeout: float = 5.0) -> bool:
        try:
            return self._get("/health", timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.base_url = None
