"""The interface every provider (where a server runs) implements."""

from abc import ABC, abstractmethod
from typing import Any

import httpx

__all__ = ["Provider"]


class Provider(ABC):
    """Starts one environment server somewhere and stops it again.

    ``start()`` returns the server's base URL once ``/health`` answers;
    ``stop()`` is idempotent and leaves nothing behind (process, container,
    actor). Providers are context managers.
    """

    base_url: str | None = None
    #: bearer token the server requires, if any (sent with health checks)
    token: str | None = None

    @abstractmethod
    def start(self) -> str:
        """Start the server; return its base URL when it is healthy."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server and release everything it holds (idempotent)."""

    def logs(self) -> str:
        """The server's recent output, for error messages."""
        return ""

    def health(self, timeout: float = 5.0) -> bool:
        """Whether ``/health`` answers now."""
        if self.base_url is None:
            return False
        try:
            return _get_health(self.base_url, timeout, self.token)
        except httpx.HTTPError:
            return False

    def __enter__(self) -> "Provider":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _get_health(base_url: str, timeout: float, token: str | None = None) -> bool:
    if base_url.startswith("http+unix://"):
        transport = httpx.HTTPTransport(uds=base_url.removeprefix("http+unix://"))
        url = "http://localhost/health"
    else:
        transport, url = None, base_url.rstrip("/") + "/health"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(transport=transport, timeout=timeout, headers=headers) as http:
        return http.get(url).status_code == 200
