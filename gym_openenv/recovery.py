"""Crash recovery for the vector env: failed servers back to working sessions.

A :class:`~gym_openenv.session_pool.SessionPool` call returns, per server, the
rows it answered (:class:`~gym_openenv.session_pool.Chunk`, where a row may
carry its own error) or a :class:`~gym_openenv.session_pool.ServerFailure`
when the server's connection was lost or timed out. :class:`Recovery` turns
the failures back into rows: its :meth:`~Recovery.restart` gives a failed
server's envs fresh sessions, and it resets every env whose call failed, so
the vector env can hand out a complete batch in which those envs start new
episodes (flagged in ``info["openenv_error"]``, and ``info["openenv_restarted"]``
for a server's). How a server is brought back is the subclass's part:
:class:`~gym_openenv.elastic.ElasticRecovery`, the one the vector env uses,
restarts it through its provider (or reconnects to a server that is not ours)
and moves its envs elsewhere when the replacement is slow.

Example:
    >>> recovery = ElasticRecovery(pool, {url: provider})     # inside the vector env's event loop  # doctest: +SKIP
    >>> outcome = await recovery.recover(await pool.step(ids, columns))  # awaits: no doctest  # doctest: +SKIP
    >>> outcome.chunks, outcome.errors, outcome.replaced                                     # doctest: +SKIP
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from gym_openenv.errors import ServerError
from gym_openenv.providers import Provider
from gym_openenv.session_pool import Chunk, ServerFailure, SessionPool

__all__ = ["Recovered", "Recovery"]


@dataclass
class Recovered:
    """The rows of one pool call after recovery.

    Attributes:
        chunks: every requested env's row; the failed envs' rows are first
            observations of new episodes.
        restarted: env indices whose server failed; their row is a new episode.
        errors: env index -> why its call failed (its own error, or its server's);
            each such row is a new episode.
        replaced: env indices outside the call that were on a replaced server:
            their sessions are new and need a reset before their next step.
    """

    chunks: list[Chunk]
    restarted: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    replaced: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class Recovery(ABC):
    """Replays resets for failed envs; subclasses bring failed servers back (:meth:`restart`).

    Args:
        pool: the sessions to repair.
        provider_of_url: the provider that started each server URL (for :meth:`restart`);
            a URL without one is a server we did not start.
        policy: ``"restart"``, or ``"raise"`` to raise the failure's
            :class:`~gym_openenv.ConnectionLost` instead.
    """

    def __init__(self, pool: SessionPool, provider_of_url: dict[str, Provider], policy: str = "restart"):
        if policy not in ("restart", "raise"):
            raise ValueError(f"on_server_failure must be 'restart' or 'raise', got {policy!r}")
        self.pool = pool
        self.provider_of_url = provider_of_url
        self.policy = policy

    @staticmethod
    def nothing_to_recover(results: list[Chunk | ServerFailure]) -> Recovered | None:
        """``results`` as they are when no server failed and no row has an error (else None):
        the common case, which needs no event loop."""
        for r in results:  # a plain loop: this runs at every step
            if isinstance(r, ServerFailure) or (r.errors and not r.autoreset):
                return None
        return Recovered(chunks=[r.healthy() for r in results])

    async def recover(self, results: list[Chunk | ServerFailure]) -> Recovered:
        """Every requested env's row: failed rows and failed servers' envs become reset rows."""
        outcome = Recovered(chunks=[])
        failed: dict[int, str] = {}  # env -> why its row failed
        replaced: list[np.ndarray] = []
        for result in results:
            if isinstance(result, ServerFailure):
                if self.policy == "raise":
                    raise result.error
                replaced.append(await self.restart(result))
                outcome.restarted += result.indices.tolist()
                failed.update(dict.fromkeys(result.indices.tolist(), f"server {result.url} failed: {result.error}"))
                continue
            if result.errors and not result.autoreset:
                for row, error in result.errors.items():
                    failed[int(result.indices[row])] = f"{error.code}: {error.message}"
            # An autoreset row that failed is left out: the env is done and gets reset on its next step.
            outcome.chunks.append(result.healthy())
        if failed:
            await self._reset_failed(failed, outcome)
        if replaced:
            outcome.replaced = np.setdiff1d(np.concatenate(replaced), outcome.restarted)
        return outcome

    async def _reset_failed(self, failed: dict[int, str], outcome: Recovered) -> None:
        indices = np.asarray(sorted(failed), dtype=np.int64)
        for chunk in await self.pool.reset(indices, [None] * len(indices)):
            if isinstance(chunk, ServerFailure):
                raise chunk.error  # the fresh server failed at once: nothing more to try
            if chunk.errors:
                row, error = next(iter(chunk.errors.items()))
                raise ServerError(error.code, f"env {int(chunk.indices[row])} failed, and so did its reset: {error.message}")
            outcome.chunks.append(chunk)
        outcome.errors.update(failed)

    @abstractmethod
    async def restart(self, failure: ServerFailure) -> np.ndarray:
        """Give ``failure``'s envs fresh sessions; returns every env index the failed server held
        (empty if an earlier failure in the same call already did)."""
