"""The interface every provider (where a server runs) implements."""

from abc import ABC, abstractmethod
from typing import Any

from gym_openenv.endpoint import Endpoint

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

    @property
    def endpoint(self) -> Endpoint:
        """How to reach the started server: its URL and token (see :mod:`gym_openenv.endpoint`)."""
        if self.base_url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return Endpoint.parse(self.base_url, self.token)

    def health(self, timeout: float = 5.0) -> bool:
        """Whether ``/health`` answers now."""
        return self.base_url is not None and self.endpoint.health(timeout)

    def __enter__(self) -> "Provider":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

