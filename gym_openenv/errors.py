"""Exceptions raised by gym_openenv.

::

    OpenEnvError
    ├── ServerError            the server answered with an OpenEnv error reply
    │   ├── CapacityReached    CAPACITY_REACHED: no free session slot
    │   └── SessionError       SESSION_ERROR: the session expired or was closed
    ├── ServerStartError       a server process or container did not come up (with its log tail)
    ├── ConnectionLost         the connection dropped (server crashed, network gone)
    ├── Unauthorized           the server wants a (different) bearer token
    ├── RequestTimeout         no reply within the client's timeout
    └── UnknownEnvironment     no environment by that name ("did you mean ...?")
"""

from typing import Any

__all__ = [
    "CapacityReached",
    "ConnectionLost",
    "OpenEnvError",
    "RequestTimeout",
    "ServerError",
    "ServerStartError",
    "SessionError",
    "UnknownEnvironment",
    "Unauthorized",
    "server_error",
]


class OpenEnvError(RuntimeError):
    """Base class of every gym_openenv error."""


class ServerError(OpenEnvError):
    """The server replied ``{"type": "error"}``; ``code`` is OpenEnv's error code."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class CapacityReached(ServerError):
    pass


class SessionError(ServerError):
    pass


class ServerStartError(OpenEnvError):
    pass


class ConnectionLost(OpenEnvError):
    pass


class Unauthorized(OpenEnvError):
    pass


class RequestTimeout(OpenEnvError, TimeoutError):
    pass


class UnknownEnvironment(OpenEnvError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def server_error(data: dict[str, Any]) -> ServerError:
    """The exception for an error reply's ``data``."""
    code = str(data.get("code", "UNKNOWN"))
    message = str(data.get("message", "unknown error"))
    details = {k: v for k, v in data.items() if k not in ("code", "message")}
    cls = {"CAPACITY_REACHED": CapacityReached, "SESSION_ERROR": SessionError}.get(code, ServerError)
    return cls(code, message, details)
