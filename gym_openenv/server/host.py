"""Everything one server process knows about the environment it serves.

:class:`EnvHost` builds environment instances from the class and the server's
keyword arguments, derives the model specs (hence the spaces and ``/schema``)
from the first instance, and runs every environment call in a worker thread
so the event loop never blocks on environment work.

Running environment code
------------------------
Every call runs on the worker budget of the client that asked for it (one
:class:`Client` per connection, from :meth:`EnvHost.client`)::

    client = host.client("ws 127.0.0.1:51234")
    observation = await host.run(env.step, action, client=client, env=env,
                                 timeout=host.settings.step_timeout)

* A client has at most ``workers_per_client`` calls in flight. A call that
  hangs keeps its thread (threads cannot be killed) *and its client's slot*
  until it returns, so a client whose steps hang uses up only its own slots:
  every other client's calls still find a worker (the pool has a thread for
  every budget's every slot unless ``workers`` says less). The stateless HTTP
  routes share one budget, :attr:`EnvHost.http_client`.
* Past ``timeout`` :meth:`EnvHost.run` raises :class:`StepTimeout`. When the call
  had started and ``env=`` names the environment it touches, that environment
  is *lost* (``StepTimeout.env_lost``, :meth:`EnvHost.is_lost`): the caller gives
  the session a new one with :meth:`SessionTable.replace
  <gym_openenv.server.sessions.SessionTable.replace>`, and the lost one is
  closed only once its call has returned: :meth:`EnvHost.close_env` never runs
  ``close()`` while another thread is still inside ``step()`` (ALE and
  Playwright are not safe for that). Other environments are untouched.
* A call that was still waiting for its client's slot or for a thread at its
  timeout never runs (``env_lost`` is False): nothing is lost.
"""

import asyncio
import functools
import inspect
import itertools
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from gym_openenv.protocol import BATCH_CAPABILITY
from gym_openenv.server.environment import Environment, EnvironmentMetadata
from gym_openenv.server.sessions import SessionTable
from gym_openenv.spaces import ModelSpec

__all__ = ["Client", "EnvHost", "ModelSpecs", "ServerSettings", "StepTimeout"]

log = logging.getLogger("gym_openenv.server")

#: Seconds an environment's ``close()`` may take before we stop waiting for it.
CLOSE_TIMEOUT = 30.0


class StepTimeout(RuntimeError):
    """An environment call ran longer than the server's step timeout.

    ``env_lost`` is True when the call had started and is still running: the
    environment it was given is lost and must be replaced.
    """

    def __init__(self, message: str, env_lost: bool):
        super().__init__(message)
        self.env_lost = env_lost


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server process (flags of ``python -m gym_openenv.server``)."""

    max_sessions: int = 256
    idle_timeout: float | None = 600.0
    step_timeout: float | None = 300.0
    #: environment calls one client (connection) may have in flight, hung ones included
    workers_per_client: int = 4
    #: worker threads in all (default: enough for every budget at once, created as needed)
    workers: int | None = None
    max_message_bytes: int = 64 * 1024 * 1024
    #: seconds a client has to send a request's head (request line and headers)
    header_timeout: float = 10.0
    #: seconds a request body may pause between two of its parts
    body_timeout: float = 30.0
    token: str | None = None
    web: bool = False  # serve the /web page (gym_openenv.server.web)
    #: Unix socket of the direct transport for clients on this machine (gym_openenv.server.direct)
    direct_socket: str | None = None

    @classmethod
    def from_environ(cls, **overrides: Any) -> "ServerSettings":
        """Defaults, then ``OPENENV_*`` environment variables, then ``overrides``."""
        env = os.environ
        values: dict[str, Any] = {}
        if "OPENENV_MAX_SESSIONS" in env:
            values["max_sessions"] = int(env["OPENENV_MAX_SESSIONS"])
        if "OPENENV_IDLE_TIMEOUT" in env:
            values["idle_timeout"] = float(env["OPENENV_IDLE_TIMEOUT"])
        if "OPENENV_STEP_TIMEOUT" in env:
            values["step_timeout"] = float(env["OPENENV_STEP_TIMEOUT"])
        if env.get("OPENENV_TOKEN"):
            values["token"] = env["OPENENV_TOKEN"]
        if env.get("OPENENV_DIRECT_SOCKET"):
            values["direct_socket"] = env["OPENENV_DIRECT_SOCKET"]
        if "OPENENV_WEB" in env:
            values["web"] = env["OPENENV_WEB"].strip().lower() in ("1", "true", "yes", "on")
        values.update({k: v for k, v in overrides.items() if v is not None})
        for limit in ("idle_timeout", "step_timeout"):  # 0 means no limit
            if values.get(limit) == 0:
                values[limit] = None
        return cls(**values)

    def __post_init__(self):
        if self.workers_per_client < 2:  # one slot for a hung call, one to build its replacement
            raise ValueError(f"workers_per_client must be >= 2, got {self.workers_per_client}")
        if self.workers is not None and self.workers < self.workers_per_client:
            raise ValueError(f"workers ({self.workers}) must be >= workers_per_client ({self.workers_per_client})")

    @property
    def worker_threads(self) -> int:
        # One budget per session's connection, one for the HTTP routes together, one for the
        # server's own calls, and one close per session: hung calls can then use up only their
        # own budget, never a thread another budget needs.
        return self.workers or (self.max_sessions + 2) * self.workers_per_client + self.max_sessions


@dataclass(frozen=True)
class ModelSpecs:
    action: ModelSpec
    observation: ModelSpec
    state: ModelSpec

    @classmethod
    def of(cls, env: Environment) -> "ModelSpecs":
        overrides = env.field_spaces()
        return cls(
            action=ModelSpec.from_model(env.action_type, overrides.get("action")),
            observation=ModelSpec.from_model(env.observation_type, overrides.get("observation")),
            state=ModelSpec.from_model(env.state_type, overrides.get("state")),
        )


class Client:
    """One client's share of the worker threads (see the module docstring)."""

    def __init__(self, name: str, slots: int):
        self.name = name
        self.slots = slots
        #: calls of this client still running, hung ones included
        self.running = 0
        self._free = asyncio.Semaphore(slots)

    async def _acquire(self, timeout: float | None) -> bool:
        """Take a slot within ``timeout``; False if none came free."""
        if self._free.locked():
            waiting = asyncio.ensure_future(self._free.acquire())
            try:
                await asyncio.wait({waiting}, timeout=timeout)
            except asyncio.CancelledError:
                if not waiting.cancel():  # it got a slot as we were cancelled: give it back
                    self._free.release()
                raise
            if not waiting.done():
                waiting.cancel()  # a slot it gets meanwhile goes back to the semaphore
                return False
        else:
            await self._free.acquire()  # free: returns at once
        self.running += 1
        return True

    def _release(self) -> None:
        self.running -= 1
        self._free.release()


class EnvHost:
    """Builds, runs and describes the environment of one server process."""

    def __init__(self, env_cls: type[Environment], env_kwargs: dict[str, Any], settings: ServerSettings):
        self.env_cls = env_cls
        self.env_kwargs = dict(env_kwargs)
        self.settings = settings
        self._executor: ThreadPoolExecutor | None = None
        self._specs: ModelSpecs | None = None
        self._metadata: EnvironmentMetadata | None = None
        self._reset_params = inspect.signature(env_cls.reset).parameters
        self.native_step_batch = env_cls.step_batch.__func__ is not Environment.step_batch.__func__
        self.sessions = SessionTable(self.create_env, self.close_env, settings.max_sessions, settings.idle_timeout)
        # Clients of the server's own calls: probing the class, and closing environments.
        self._own = Client("server", settings.workers_per_client)
        self._closer = Client("closing", max(settings.workers_per_client, settings.max_sessions))
        #: the stateless HTTP routes share one budget: hung HTTP steps never take a session's workers
        self.http_client = Client("HTTP routes", settings.workers_per_client)
        self._in_flight: dict[int, int] = {}  # id(env) -> its worker calls still running
        #: ticket -> the environments of a job a direct connection's thread runs (one entry per job,
        #: not per environment: the check is only needed by the rare close that finds them busy)
        self._direct_jobs: dict[int, list[Environment]] = {}
        self._direct_tickets = itertools.count()
        # Worker calls are counted on the event loop, the direct transport's on its own threads.
        self._in_flight_lock = threading.Lock()
        self._lost: set[int] = set()  # id(env) of environments whose call timed out
        self._close_when_done: dict[int, Environment] = {}
        self._pending: set[asyncio.Future] = set()  # background closes, kept from the garbage collector
        #: names this server process: a direct socket's welcome must match /metadata's
        self.server_id = secrets.token_hex(8)
        #: the direct transport's socket while it listens (gym_openenv.server.direct)
        self.direct_socket: str | None = None

    # running environment code

    def client(self, name: str) -> Client:
        """A fresh worker budget for one client: one per WebSocket connection."""
        return Client(name, self.settings.workers_per_client)

    async def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        client: Client | None = None,
        timeout: float | None = None,
        env: Environment | None = None,
    ) -> Any:
        """``fn(*args)`` in a worker thread, on ``client``'s budget (default: the server's own).

        Raises:
            StepTimeout: not finished within ``timeout`` seconds (counted from this
                call, waiting for a free slot included); see the module docstring.
        """
        return await self._run(fn, args, client or self._own, timeout, env, None)

    async def _run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        client: Client,
        timeout: float | None,
        env: Environment | None,
        if_abandoned: Callable[[Any], None] | None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        name = getattr(fn, "__qualname__", None) or repr(fn)
        if not await client._acquire(timeout):
            raise StepTimeout(
                f"{name} did not start within {timeout}s: all {client.slots} workers of this client "
                "are still busy with earlier calls",
                env_lost=False,
            )
        if self._executor is None:  # created on first use, so an app can start again after shutdown
            self._executor = ThreadPoolExecutor(max_workers=self.settings.worker_threads, thread_name_prefix="openenv-env")
        answer = loop.create_future()
        key = None if env is None else id(env)
        if key is not None:
            self._enter((key,))
        work = self._executor.submit(fn, *args)
        work.add_done_callback(lambda w: loop.call_soon_threadsafe(self._finished, w, answer, client, key, if_abandoned))
        try:
            return await asyncio.wait_for(answer, None if deadline is None else max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            started = not work.cancel()
            if started and key is not None:
                self._lost.add(key)
            how = "did not finish" if started else "found no free worker thread"
            raise StepTimeout(f"{name} {how} within {timeout}s", env_lost=started and key is not None) from None

    def _finished(self, work: Future, answer: asyncio.Future, client: Client, key: int | None, if_abandoned: Any) -> None:
        """On the event loop, when a worker call ends (or was cancelled before it ran)."""
        client._release()
        if key is not None:
            for env in self._leave((key,)):
                self._in_background(self.close_env(env))
        if work.cancelled():
            return
        if not answer.done():
            if work.exception() is not None:
                answer.set_exception(work.exception())
            else:
                answer.set_result(work.result())
        elif if_abandoned is not None and work.exception() is None:
            if_abandoned(work.result())

    def _enter(self, keys: Any) -> None:
        with self._in_flight_lock:
            for key in keys:
                self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def _leave(self, keys: Any) -> list[Environment]:
        """Count the calls out; the environments whose close waited for them."""
        with self._in_flight_lock:
            for key in keys:
                self._in_flight[key] -= 1
                if not self._in_flight[key]:
                    del self._in_flight[key]
            return self._take_due(keys)

    def _take_due(self, keys: Any) -> list[Environment]:
        """The environments of ``keys`` whose close waited and on which no call runs any more,
        taken off the waiting list (hold the in-flight lock)."""
        if not self._close_when_done:  # the common case: no close is waiting
            return []
        return [self._close_when_done.pop(key) for key in keys if key in self._close_when_done and not self._running(key)]

    def _running(self, key: int) -> bool:
        """Whether a call on the environment ``id`` is ``key`` runs (hold the in-flight lock)."""
        return bool(self._in_flight.get(key)) or any(id(env) == key for envs in self._direct_jobs.values() for env in envs)

    def calls_started(self, envs: list[Environment]) -> int:
        """The calling thread runs calls on ``envs`` itself (the direct transport): until
        :meth:`calls_finished` with the ticket returned, :meth:`close_env` on any of them waits."""
        with self._in_flight_lock:
            ticket = next(self._direct_tickets)
            self._direct_jobs[ticket] = envs
        return ticket

    def calls_finished(self, ticket: int) -> list[Environment]:
        """The end of :meth:`calls_started`; returns the environments now due to close
        (the caller closes them with :meth:`close_env` on the event loop)."""
        with self._in_flight_lock:
            envs = self._direct_jobs.pop(ticket)
            return self._take_due(map(id, envs)) if self._close_when_done else []  # most often no close waits

    def close_later(self, env: Environment) -> None:
        """Close ``env`` in the background (on the event loop), counted by :meth:`drain`."""
        self._in_background(self.close_env(env))

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def is_lost(self, env: Environment) -> bool:
        """Whether a call on ``env`` timed out (it may still be running)."""
        return id(env) in self._lost

    async def create_env(self, client: Client | None = None) -> Environment:
        """A new environment instance, built on ``client``'s budget within the step timeout."""

        def abandoned(env: Environment) -> None:  # built after we gave up waiting: close it
            self._in_background(self.close_env(env))

        build = functools.partial(self.env_cls, **self.env_kwargs)
        env = await self._run(build, (), client or self._own, self.settings.step_timeout, None, abandoned)
        if self._specs is None:
            self._learn(env)
        return env

    async def close_env(self, env: Environment) -> None:
        """Close ``env`` now, or as soon as its running calls return; never raises."""
        key = id(env)
        with self._in_flight_lock:
            if self._running(key):
                self._close_when_done[key] = env
                return
        try:
            await self.run(env.close, client=self._closer, timeout=CLOSE_TIMEOUT)
        except Exception:
            log.exception("closing %s failed", type(env).__name__)
        finally:
            self._lost.discard(key)

    def _learn(self, env: Environment) -> None:
        self._specs = ModelSpecs.of(env)
        self._metadata = env.metadata()

    async def _probe(self) -> None:
        env = await self.create_env()
        await self.close_env(env)

    # what the server says about itself

    @property
    def known_specs(self) -> ModelSpecs:
        """The specs, once an environment was built (any open session has one)."""
        if self._specs is None:
            raise RuntimeError("no environment was built yet: await specs() first")
        return self._specs

    async def specs(self) -> ModelSpecs:
        if self._specs is None:
            await self._probe()
        return self._specs

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            await self._probe()
        meta = asdict(self._metadata)
        extra = meta.pop("extra")
        meta.update(extra)
        meta["capabilities"] = [BATCH_CAPABILITY, "stream-step"]
        meta["max_sessions"] = self.settings.max_sessions
        meta["native_step_batch"] = self.native_step_batch
        meta["server_id"] = self.server_id
        if self.direct_socket is not None:
            meta["direct_socket"] = self.direct_socket
        return meta

    def reset_kwargs(self, data: dict[str, Any]) -> dict[str, Any]:
        """The reset arguments the environment accepts (OpenEnv drops the rest too)."""
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self._reset_params.values()):
            return dict(data)
        return {k: v for k, v in data.items() if k in self._reset_params}

    @property
    def busy(self) -> bool:
        """Whether an environment call is still running."""
        return bool(self._in_flight or self._direct_jobs)

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no environment call runs and every
        close, deferred ones included, is done: the server's way out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self.busy or self._pending) and loop.time() < deadline:
            await asyncio.sleep(0.05)

    def shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
