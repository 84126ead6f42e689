"""Elastic servers for the vector env: envs move when servers come and go.

:class:`ElasticRecovery` is the vector env's :class:`~gym_openenv.recovery.Recovery`
with servers that may vanish for good (a spot machine taken back) and appear
later (a node joins):

* A lost server gets a replacement. If the replacement is not up within its
  provider's ``replacement_timeout`` (the Ray provider's default is a few
  seconds), the lost server's envs become new sessions on the surviving
  servers, as many on each as evens out the load and its free session slots
  allow; the replacement keeps waiting for room in the background. When
  nothing can host them, :class:`~gym_openenv.ServerStartError` says so at
  once. A provider without ``replacement_timeout`` is waited for, as before.
* When a replacement comes up later, or :meth:`~ElasticRecovery.add_servers`
  starts more, the fewest envs that even out the load move onto them
  (:meth:`~ElasticRecovery.rebalance`); :meth:`~ElasticRecovery.remove_servers`
  moves envs off servers and stops them. The other envs are not touched.

A moved env always starts a new episode on a fresh session: its previous
session is closed, so no env is ever held twice. The vector env flags every
moved env in ``info["openenv_restarted"]``.

Example (local servers; with ``provider="ray"`` the servers are Ray actors on a cluster):
    >>> import gymnasium as gym, numpy as np
    >>> envs = gym.make_vec("openenv/echo-v0", num_envs=6, num_servers=2)
    >>> _ = envs.reset(seed=0)
    >>> envs.add_servers(1)       # a node joined: 2 envs move to the new server
    >>> info = envs.step(np.array(["a"] * 6))[4]
    >>> int(info["openenv_restarted"].sum())
    2
    >>> envs.remove_servers(2)    # the 6 envs on the one server left
    >>> info = envs.step(np.array(["b"] * 6))[4]
    >>> int(info["openenv_restarted"].sum())
    4
    >>> envs.close()
"""

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable

import numpy as np

from gym_openenv.client import fetch_json
from gym_openenv.errors import ServerStartError
from gym_openenv.providers import Provider
from gym_openenv.recovery import Recovery
from gym_openenv.session_pool import ServerFailure, SessionPool

__all__ = ["ElasticRecovery"]

_HEALTH_TIMEOUT = 5.0  # seconds for a surviving server to report its free session slots
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # between attempts of a replacement that failed to start

StartServer = Callable[[], tuple[str, Provider]]


class ElasticRecovery(Recovery):
    """Crash recovery that moves envs between servers instead of waiting for one.

    Args:
        pool: the sessions to repair and move.
        provider_of_url: the provider that started each server URL (kept up to date).
        policy: ``"restart"`` or ``"raise"``, as for :class:`~gym_openenv.recovery.Recovery`.
        providers: every provider the vector env stops on close (servers added here join it).
        start_server: starts one more server like the vector env's own; ``None`` if the
            vector env did not start its servers (then :meth:`add_servers` is not available).
    """

    def __init__(
        self,
        pool: SessionPool,
        provider_of_url: dict[str, Provider],
        policy: str = "restart",
        *,
        providers: list[Provider] | None = None,
        start_server: StartServer | None = None,
    ):
        super().__init__(pool, provider_of_url, policy)
        self.providers = providers if providers is not None else list(provider_of_url.values())
        self.start_server = start_server
        #: servers that hold (or may hold) envs, in the order they joined
        self.urls: list[str] = list(dict.fromkeys(pool.urls))
        self._replacements: dict[concurrent.futures.Future, Provider] = {}  # started, not yet in use
        self._closed = threading.Event()

    # --- a lost server ---------------------------------------------------------------

    async def restart(self, failure: ServerFailure) -> np.ndarray:
        """Bring ``failure``'s envs back on fresh sessions; returns every env index the lost server held."""
        if len(failure.connection.env_indices) == 0:
            return np.zeros(0, dtype=np.int64)  # an earlier failure in this call already moved its envs
        lost = failure.url
        held = self.envs_on(lost)
        if len(held) == 0:
            return held  # its envs were moved already (another of its connections failed first)
        if lost in self.urls:
            self.urls.remove(lost)
        provider = self.provider_of_url.pop(lost, None)
        wait = getattr(provider, "replacement_timeout", None)
        if provider is None:
            url = lost  # not ours to restart: reconnect, in case it came back
        elif wait is None:
            await asyncio.to_thread(provider.stop)
            url = await asyncio.to_thread(provider.start)
        else:
            replacement = self._replace_in_background(provider)
            try:
                url = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(replacement)), wait)
            except TimeoutError:
                await self._rehome(held, lost, wait)  # the replacement joins later, through rebalance()
                return held
            del self._replacements[replacement]
        if provider is not None:
            self.provider_of_url[url] = provider
        self.urls.append(url)
        await self.move({url: held})
        return held

    def _replace_in_background(self, provider: Provider) -> concurrent.futures.Future:
        """Stop ``provider`` and start it again on a thread, retrying until it is up or we close."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                provider.stop()
                for attempt in itertools.count():
                    if self._closed.is_set():
                        raise ServerStartError("closed while a replacement server was starting")
                    try:
                        url = provider.start()
                    except ServerStartError:  # e.g. no room for it yet: try again
                        self._closed.wait(_RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)])
                        continue
                    if self._closed.is_set():
                        provider.stop()
                        continue
                    future.set_result(url)
                    return
            except BaseException as e:  # handed to whoever waits for the replacement
                future.set_exception(e)

        self._replacements[future] = provider
        threading.Thread(target=run, name="openenv-replacement", daemon=True).start()
        return future

    async def _rehome(self, envs: np.ndarray, lost: str, waited: float) -> None:
        """New sessions for ``envs`` on the surviving servers, evening out their load."""
        room = await self._room(self.urls)
        plan = _fill_evenly(envs, {u: len(self.envs_on(u)) for u in room}, room)
        if plan is None:
            free = ", ".join(f"{u}: {n}" for u, n in room.items()) or "none reachable"
            raise ServerStartError(
                f"server {lost} was lost and no replacement came up within {waited}s; its {len(envs)} envs "
                f"do not fit on the surviving servers (free session slots: {free}). Add room to the cluster, "
                f"start servers with a larger --max-sessions, or raise replacement_timeout"
            )
        await self.move(plan)

    async def _room(self, urls: list[str]) -> dict[str, int]:
        """Free session slots of each server that answers ``/health`` (others are left out)."""

        async def free(url: str) -> int | None:
            try:
                health = await fetch_json(url, "/health", self.pool.token, timeout=_HEALTH_TIMEOUT)
                return int(health["max_sessions"]) - int(health["active_sessions"])
            except Exception:  # unreachable, or not our server: it cannot take envs
                return None

        answers = await asyncio.gather(*(free(u) for u in urls))
        return {u: n for u, n in zip(urls, answers) if n is not None}

    # --- servers that join and leave -------------------------------------------------

    @property
    def replacement_ready(self) -> bool:
        """Whether a replacement came up (or gave up) since the last :meth:`rebalance`."""
        return any(f.done() for f in self._replacements)

    async def rebalance(self) -> np.ndarray:
        """Take replacements that came up into use and even out the load; returns the envs moved.

        Call it only while no call on the pool is in flight.
        """
        for future in [f for f in self._replacements if f.done()]:
            provider = self._replacements.pop(future)
            if future.exception() is None:
                url = future.result()
                self.provider_of_url[url] = provider
                self.urls.append(url)
        return await self.spread()

    async def spread(self) -> np.ndarray:
        """Move the fewest envs so every server in :attr:`urls` holds the same number (±1)."""
        if not self.urls:
            return np.zeros(0, dtype=np.int64)
        counts = {u: len(self.envs_on(u)) for u in self.urls}
        targets = _even_targets(self.pool.num_envs, list(counts))
        leaving = [self._newest_envs(u, n - targets[u]) for u, n in counts.items() if n > targets[u]]
        if not leaving:
            return np.zeros(0, dtype=np.int64)
        envs = np.concatenate(leaving)
        short = {u: targets[u] - n for u, n in counts.items() if n < targets[u]}
        plan, start = {}, 0
        for url, need in short.items():
            plan[url] = envs[start:start + need]
            start += need
        await self.move(plan)
        return envs

    async def add_servers(self, count: int) -> np.ndarray:
        """Start ``count`` servers like the others and move envs onto them; returns the envs moved."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if self.start_server is None:
            raise RuntimeError("add_servers() needs a vector env that started its own servers (not url=/urls=)")
        started = await asyncio.gather(*(asyncio.to_thread(self.start_server) for _ in range(count)), return_exceptions=True)
        failures = [s for s in started if isinstance(s, BaseException)]
        if failures:
            await asyncio.gather(*(asyncio.to_thread(s[1].stop) for s in started if not isinstance(s, BaseException)))
            raise failures[0]
        for url, provider in started:
            self.providers.append(provider)
            self.provider_of_url[url] = provider
            self.urls.append(url)
        return await self.spread()

    async def remove_servers(self, count: int) -> np.ndarray:
        """Move the envs of the ``count`` newest servers onto the others and stop those servers.

        Returns the envs moved. Raises :class:`~gym_openenv.ServerStartError`
        (nothing moved) if the remaining servers have no room for them.
        """
        if not 1 <= count < len(self.urls):
            raise ValueError(f"count must be in [1, {len(self.urls) - 1}] (servers in use: {len(self.urls)}), got {count}")
        leaving, staying = self.urls[-count:], self.urls[:-count]
        envs = np.concatenate([self.envs_on(u) for u in leaving])
        room = await self._room(staying)
        plan = _fill_evenly(envs, {u: len(self.envs_on(u)) for u in room}, room)
        if plan is None:
            raise ServerStartError(f"the {len(staying)} remaining servers have no room for {len(envs)} more envs (free session slots: {room})")
        await self.move(plan)
        self.urls = staying
        for url in leaving:
            provider = self.provider_of_url.pop(url, None)
            if provider is not None:
                await asyncio.to_thread(provider.stop)
                self.providers.remove(provider)
        return envs

    def close(self) -> None:
        """Stop replacements still starting (they would outlive the vector env otherwise)."""
        self._closed.set()
        for future, provider in list(self._replacements.items()):
            deadline = time.monotonic() + 60
            while not future.done() and time.monotonic() < deadline:
                provider.stop()  # cancels an actor still waiting for room; start() then returns
                try:
                    future.exception(timeout=1)
                except concurrent.futures.TimeoutError:
                    pass
            provider.stop()
        self._replacements.clear()

    # --- the pool's envs, by server ----------------------------------------------------

    def envs_on(self, url: str) -> np.ndarray:
        """The env indices whose sessions live on the server at ``url``."""
        held = [s.env_indices for s in self.pool.servers if s is not None and s.url == url]
        return np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, dtype=np.int64)

    def _newest_envs(self, url: str, n: int) -> np.ndarray:
        """``n`` envs on ``url``, from its newest connections first (guests leave before residents)."""
        picked: list[int] = []
        for server in reversed(self.pool.servers):
            if server is not None and server.url == url:
                picked += server.env_indices.tolist()[::-1][: n - len(picked)]
            if len(picked) >= n:
                break
        return np.asarray(picked, dtype=np.int64)

    async def move(self, plan: dict[str, np.ndarray]) -> None:
        """Give each env of ``plan[url]`` a fresh session on ``url`` and close its old one."""
        for url, envs in plan.items():
            if len(envs):
                await self.pool.move(np.asarray(envs, dtype=np.int64), url)


def _even_targets(num_envs: int, urls: list[str]) -> dict[str, int]:
    """How many envs each server holds when they are spread evenly (earlier servers get the extra ones)."""
    base, extra = divmod(num_envs, len(urls))
    return {u: base + (i < extra) for i, u in enumerate(urls)}


def _fill_evenly(envs: np.ndarray, load: dict[str, int], room: dict[str, int]) -> dict[str, np.ndarray] | None:
    """Each env to the least loaded server with a free slot; ``None`` if they do not all fit."""
    if sum(max(r, 0) for r in room.values()) < len(envs):
        return None
    load, room = dict(load), dict(room)
    plan: dict[str, list[int]] = {}
    for env in envs.tolist():
        url = min((u for u in room if room[u] > 0), key=lambda u: load[u])
        plan.setdefault(url, []).append(env)
        load[url] += 1
        room[url] -= 1
    return {u: np.asarray(e, dtype=np.int64) for u, e in plan.items()}

