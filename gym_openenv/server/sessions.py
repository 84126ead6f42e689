"""The sessions one server process holds, with a cap and an idle timeout."""

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gym_openenv.server.environment import Environment

__all__ = ["CapacityError", "Session", "SessionTable"]


class CapacityError(RuntimeError):
    """The server already holds its maximum number of sessions."""

    def __init__(self, active: int, max_sessions: int):
        super().__init__(
            f"server at capacity: {active} of {max_sessions} sessions in use; "
            "close a session, or start the server with a larger --max-sessions"
        )
        self.active = active
        self.max_sessions = max_sessions


@dataclass(eq=False)
class Session:
    """One client's environment instance."""

    id: str
    env: Environment
    last_active: float = field(default_factory=time.monotonic)
    busy: int = 0  # operations in flight; a busy session is never reaped
    broken: str | None = None  # why the session can no longer be used
    #: environments this session lost to a step timeout and got replaced
    replaced: int = 0

    def touch(self) -> None:
        self.last_active = time.monotonic()


class SessionTable:
    """Creates, finds, replaces and ends sessions.

    Slots are reserved before the environment is built, so a burst of clients
    over the cap gets :class:`CapacityError` at once instead of piling up.
    ``create_env(client)`` and ``close_env(env)`` come from the
    :class:`~gym_openenv.server.host.EnvHost`: they build on the client's worker
    budget, and a close waits for the environment's running calls to return.
    """

    def __init__(
        self,
        create_env: Callable[[Any], Awaitable[Environment]],
        close_env: Callable[[Environment], Awaitable[None]],
        max_sessions: int,
        idle_timeout: float | None,
    ):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self._create_env = create_env
        self._close_env = close_env
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self._sessions: dict[str, Session] = {}
        self._reserved = 0
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def active(self) -> int:
        return len(self._sessions) + self._reserved

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise KeyError(f"no session {session_id!r} (closed, or reaped after {self.idle_timeout}s idle)") from None

    def holds(self, session: Session) -> bool:
        """Whether ``session`` is still open (not closed, not reaped)."""
        return self._sessions.get(session.id) is session

    async def open(self, client: Any = None) -> Session:
        """A new session, its environment built on ``client``'s worker budget."""
        if self.active >= self.max_sessions:
            raise CapacityError(self.active, self.max_sessions)
        self._reserved += 1
        try:
            env = await self._create_env(client)
        finally:
            self._reserved -= 1
        session = Session(id=f"s{next(self._ids)}", env=env)
        self._sessions[session.id] = session
        return session

    async def replace(self, session: Session, client: Any = None) -> None:
        """Give ``session`` a new environment (its old one hung): the session id and its
        slot stay, the old environment is closed once its running call returns.
        If building the new one fails, the session stays ``broken`` and this raises."""
        old = session.env
        session.broken = "its environment was lost to a step timeout and could not be replaced yet"
        session.env = await self._create_env(client)
        session.broken = None
        session.replaced += 1
        await self._close_env(old)

    async def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await self._close_env(session.env)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(sid) for sid in list(self._sessions)))

    async def reap_idle_forever(self, interval: float | None = None) -> None:
        """Close sessions idle longer than ``idle_timeout`` (until cancelled)."""
        if self.idle_timeout is None:
            return
        interval = interval or max(0.05, min(5.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self.idle_timeout
            idle = [s.id for s in self._sessions.values() if not s.busy and s.last_active < deadline]
            for session_id in idle:
                await self.close(session_id)
