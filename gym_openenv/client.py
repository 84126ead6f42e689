"""Clients for environment servers: async sessions and a sync facade.

* :class:`AsyncSession`: one OpenEnv session over ``/ws`` (JSON). Works
  against our servers and any OpenEnv server.
* :class:`BatchConnection`: many sessions over one ``/ws/batch`` connection
  (msgpack, columnar), for servers that advertise it.
* :class:`BatchSession`: one session on a batch connection (what ``gym.make``
  uses where the server offers the batch protocol).
* :class:`EnvClient`: a typed client (actions and observations as model
  instances) in OpenEnv's style, async with a :meth:`EnvClient.sync` facade;
  ``gym_openenv/servers/<name>/client.py`` subclass it.
* :class:`LoopThread`: the one background event loop sync callers share.

Example:
    >>> from gym_openenv.servers.echo.client import EchoEnv
    >>> from gym_openenv.servers.echo.models import EchoAction
    >>> with EchoEnv.launch().sync() as env:
    ...     _ = env.reset()
    ...     env.step(EchoAction(message="hi")).observation.echoed_message
    'hi'
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection

from gym_openenv.endpoint import Endpoint
from gym_openenv.errors import CapacityReached, ConnectionLost, RequestTimeout, ServerError, server_error
from gym_openenv.models import Action, Observation, State
from gym_openenv.protocol import (
    BatchClose,
    BatchClosed,
    BatchOpen,
    BatchOpened,
    BatchRequest,
    BatchReset,
    BatchResult,
    BatchState,
    BatchStep,
    decode_batch_reply,
    decode_json,
    encode_json,
    encode_msgpack,
    observation_from_json,
)
from gymnasium import spaces as gym_spaces

from gym_openenv.spaces import from_wire, to_plain

__all__ = [
    "AsyncSession",
    "BatchConnection",
    "BatchSession",
    "EnvClient",
    "LoopThread",
    "StepResult",
    "fetch_json",
    "openenv_reply",
]

T = TypeVar("T")
ActT = TypeVar("ActT")
ObsT = TypeVar("ObsT")
StateT = TypeVar("StateT")

DEFAULT_TIMEOUT = 60.0
# How long a closed connection may take to hand over the frames it received before its close.
# They are buffered already, so this only bounds the wait when there are none.
_LEFT_BEHIND_WAIT = 1.0
_ARRAY_SPACES = (gym_spaces.Box, gym_spaces.MultiBinary, gym_spaces.MultiDiscrete)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class LoopThread:
    """An asyncio loop on a daemon thread, for sync callers.

    Every sync facade in the process shares :meth:`shared`, so a hundred
    environments still use one loop and one thread.
    """

    _shared: ClassVar["LoopThread | None"] = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = _new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gym-openenv-loop", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> "LoopThread":
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Start ``coro`` on the loop; the returned future completes with its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop; await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine's own timeout error: pass it on as it is
                raise
            future.cancel()
            raise RequestTimeout(f"no result within {timeout}s") from None


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it comes with uvicorn[standard]): its
    transports move large observation frames with far less Python overhead."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _open_ws(base_url: str, path: str, token: str | None, timeout: float, max_size: int = MAX_MESSAGE_BYTES) -> ClientConnection:
    return await Endpoint.parse(base_url, token).connect(path, timeout=timeout, max_size=max_size)


async def _left_behind_error(ws: ClientConnection, decode: Callable[[Any], Any]) -> ServerError | None:
    """The error reply a server sent just before it closed the connection, if one is unread.

    OpenEnv servers refuse a session (``CAPACITY_REACHED``, ``FACTORY_ERROR``) by
    sending an error and closing; a request sent after that fails on the closed
    socket, but the error frame is still buffered and says why.
    """
    try:
        raw = await asyncio.wait_for(ws.recv(), _LEFT_BEHIND_WAIT)
    except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
        return None
    try:
        reply = decode(raw)
    except Exception:  # not a frame of ours: the closed connection is all there is to report
        return None
    if isinstance(reply, dict) and reply.get("type") == "error":
        return server_error(reply.get("data") or {})
    return None


async def fetch_json(base_url: str, path: str, token: str | None = None, timeout: float = 30.0) -> Any:
    """GET ``path`` from a server (``/schema``, ``/metadata``, ``/health``)."""
    return await Endpoint.parse(base_url, token).get_json(path, timeout)


def openenv_reply(raw: str | bytes) -> dict[str, Any]:
    """An OpenEnv reply frame, decoded: an observation's fields back in place
    (:func:`~gym_openenv.protocol.observation_from_json`), an error reply raised.

    Every OpenEnv JSON session reads its replies through this, on the event loop
    (:class:`AsyncSession`) or in the caller's thread (:mod:`gym_openenv.blocking_ws`).

    Raises:
        ServerError: the server's error reply (:func:`~gym_openenv.errors.server_error`).
        ConnectionLost: the frame is not an OpenEnv reply; a server that sends one
            cannot be trusted with the next request, so the caller closes the connection.
    """
    try:
        reply = decode_json(raw)
    except ValueError as e:  # not JSON (UnicodeDecodeError is a ValueError too)
        raise ConnectionLost(f"the server sent a frame that is not JSON ({e}): {raw[:80]!r}") from e
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind == "error":
        data = reply.get("data")
        raise server_error(data if isinstance(data, dict) else {})
    if kind in ("observation", "partial_observation"):
        if not isinstance(reply.get("data"), dict):
            raise ConnectionLost(f"the server sent an observation reply without its data: {str(reply)[:80]}")
        reply["data"] = observation_from_json(reply["data"])
    elif kind is None:
        raise ConnectionLost(f"the server sent a frame that is not an OpenEnv reply: {str(reply)[:80]}")
    return reply


class _Channel:
    """An OpenEnv WebSocket (JSON) with request/response framing, timeouts and clear errors."""

    def __init__(self, ws: ClientConnection, timeout: float):
        self.ws = ws
        self.timeout = timeout
        self._lock = asyncio.Lock()  # one request in flight per connection

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.ws.send(encode_json(message))
        except websockets.exceptions.ConnectionClosed as e:
            refused = await _left_behind_error(self.ws, decode_json)
            if refused is not None:
                raise refused from e
            raise ConnectionLost(f"connection to the server closed: {e}") from e

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout or self.timeout):  # wait_for would make a task per reply (~15 us more)
                raw = await self.ws.recv()
        except TimeoutError:
            raise RequestTimeout(f"no reply from the server within {timeout or self.timeout}s") from None
        except websockets.exceptions.ConnectionClosed as e:
            raise ConnectionLost(f"connection to the server closed: {e}") from e
        return openenv_reply(raw)

    async def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        async with self._lock:
            await self.send(message)
            return await self.receive(timeout)

    async def close(self) -> None:
        await self.ws.close()


class AsyncSession:
    """One OpenEnv session: reset, step, state and close over ``/ws``.

    Payloads are OpenEnv's: ``step`` takes the action's field dict and returns
    ``{"observation": {...}, "reward", "done", ...}``.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None):
        self.base_url = base_url
        self.timeout = timeout
        self.token = token
        self._channel: _Channel | None = None

    @property
    def connected(self) -> bool:
        return self._channel is not None

    async def connect(self) -> "AsyncSession":
        if self._channel is None:
            ws = await _open_ws(self.base_url, "/ws", self.token, self.timeout)
            self._channel = _Channel(ws, self.timeout)
        return self

    async def _request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        await self.connect()
        try:
            return await self._channel.request(message, timeout)
        except (ConnectionLost, RequestTimeout, CapacityReached):
            # The connection is in an unknown state, or (CAPACITY_REACHED) the server refused the
            # session and closed it: drop it so the next call reconnects.
            await self._drop()
            raise

    async def reset(self, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        return (await self._request({"type": "reset", "data": to_plain(kwargs, keep_arrays=False)}, timeout))["data"]

    async def step(self, action: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        return (await self._request({"type": "step", "data": action}, timeout))["data"]

    async def stream_step(self, action: dict[str, Any], timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield partial observations as the server produces them, then the final one.

        ``timeout`` bounds the wait for each message, not the whole step.
        """
        await self.connect()
        channel = self._channel
        async with channel._lock:
            await channel.send({"type": "step", "data": action, "stream": True})
            while True:
                reply = await channel.receive(timeout)
                yield reply["data"]
                if reply["type"] == "observation":
                    return

    async def state(self) -> dict[str, Any]:
        return (await self._request({"type": "state"}))["data"]

    async def _drop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                await channel.close()
            except (OSError, websockets.exceptions.WebSocketException):
                pass  # already gone; nothing left to release

    async def close(self) -> None:
        """End the session (idempotent)."""
        if self._channel is not None:
            try:
                await self._channel.send({"type": "close"})
            except ConnectionLost:
                pass  # the server is gone: the session is over either way
            await self._drop()


class BatchConnection:
    """Many sessions over one ``/ws/batch`` connection (binary, columnar).

    Requests and replies are :mod:`gym_openenv.protocol`'s ``Batch*`` models.
    Each request carries a sequence number that its reply must echo. A request
    that times out closes the connection (its reply may still come, and must
    never be read as the next request's): the sessions on it are gone, and the
    next call raises :class:`~gym_openenv.ConnectionLost`.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.base_url = base_url
        self.timeout = timeout
        self.token = token
        self.max_message_bytes = max_message_bytes
        self._ws: ClientConnection | None = None
        self._closed_because: str | None = None
        self._seq = 0
        self._lock = asyncio.Lock()  # one request in flight per connection

    async def connect(self) -> "BatchConnection":
        if self._ws is None and self._closed_because is None:
            self._ws = await _open_ws(self.base_url, "/ws/batch", self.token, self.timeout, self.max_message_bytes)
        return self

    async def request(self, message: "BatchRequest | dict[str, Any]", timeout: float | None = None) -> Any:
        """Send ``message`` (a request model, or its :meth:`~gym_openenv.protocol.BatchRequest.message`
        map); its reply (a ``Batch*`` model), or the server's error raised."""
        async with self._lock:
            if self._ws is None:
                raise ConnectionLost(f"the batch connection to {self.base_url} is closed: {self._closed_because or 'not connected'}")
            self._seq += 1
            wire = message.wire() if isinstance(message, BatchRequest) else message
            wire["seq"] = seq = self._seq
            try:
                await self._ws.send(encode_msgpack(wire))
            except websockets.exceptions.ConnectionClosed as e:
                # The server may have said why before it closed: an error frame nobody read yet.
                refused = await _left_behind_error(self._ws, decode_batch_reply)
                await self._drop(f"closed: {e}")
                if refused is not None:
                    raise refused from e
                raise ConnectionLost(f"connection to the server closed: {e}") from e
            try:
                async with asyncio.timeout(timeout or self.timeout):  # no task per reply, as wait_for makes
                    raw = await self._ws.recv()
            except TimeoutError:
                await self._drop(f"no reply within {timeout or self.timeout}s")
                raise RequestTimeout(f"no reply from the server within {timeout or self.timeout}s; the connection was closed") from None
            except websockets.exceptions.ConnectionClosed as e:
                await self._drop(f"closed: {e}")
                raise ConnectionLost(f"connection to the server closed: {e}") from e
            reply = decode_batch_reply(raw)
            reply_seq = reply.get("seq") if isinstance(reply, dict) else reply.seq
            if reply_seq != seq:  # cannot happen with a conforming server; never pass it on as ours
                await self._drop(f"reply {reply_seq} to request {seq}")
                raise ConnectionLost(f"the server answered request {seq} with a reply to {reply_seq}; the connection was closed")
            if isinstance(reply, dict):
                raise server_error(reply.get("data", {}))
            return reply

    async def open(self, n: int, shm: bool = False) -> BatchOpened:
        """Open ``n`` sessions; with ``shm`` the reply may describe the server's shared block."""
        await self.connect()
        return await self.request(BatchOpen.model_construct(n=n, shm=shm, max_reply_bytes=self.max_message_bytes))

    async def reset(self, ids: list[int], seeds: list[int | None] | None = None, options: dict[str, Any] | None = None, timeout: float | None = None) -> BatchResult:
        return await self.request(BatchReset.model_construct(ids=ids, seeds=seeds, options=options), timeout)

    async def step(self, ids: list[int], actions: dict[str, Any], reset_ids: list[int] = (), autoreset: bool = False, timeout: float | None = None) -> BatchResult:
        """Reset ``reset_ids`` and step ``ids`` in one round trip (rows: resets first)."""
        request = BatchStep.model_construct(ids=ids, actions=actions, reset_ids=list(reset_ids), autoreset=autoreset)
        return await self.request(request, timeout)

    @property
    def is_open(self) -> bool:
        return self._ws is not None

    async def close_sessions(self, ids: list[int]) -> BatchClosed:
        return await self.request(BatchClose.model_construct(ids=ids))

    async def _drop(self, why: str) -> None:
        ws, self._ws = self._ws, None
        self._closed_because = why
        if ws is not None:
            try:
                await ws.close()
            except (OSError, websockets.exceptions.WebSocketException):
                pass  # already gone

    async def close(self) -> None:
        """Close the connection and with it every session on it (idempotent)."""
        await self._drop("closed by the client")


class BatchSession:
    """One session on the batch protocol (a batch of one): what ``gym.make`` uses
    wherever the server offers it, with shared-memory arrays from a co-located server.

    Same interface as :class:`AsyncSession` (OpenEnv payload dicts in and out).
    A dropped or timed-out connection is reopened, with a new session, at the next
    :meth:`reset`; a :meth:`step` on it raises :class:`~gym_openenv.ConnectionLost`.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None, shared_memory: bool = True):
        self.base_url = base_url
        self.timeout = timeout
        self.token = token
        self.shared_memory = shared_memory and same_machine(base_url)
        self._connection: BatchConnection | None = None
        self._id = 0
        self._slots: Any = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_open

    async def connect(self) -> "BatchSession":
        if self.connected:
            return self
        await self._drop()
        connection = BatchConnection(self.base_url, timeout=self.timeout, token=self.token)
        await connection.connect()
        try:
            ids, self._slots = await run_async(opening(1, self.shared_memory, connection.max_message_bytes), connection.request)
        except BaseException:
            await connection.close()
            raise
        self._connection, self._id = connection, ids[0]
        return self

    def _payload(self, reply: BatchResult) -> dict[str, Any]:
        return single_payload(reply, self._slots)

    async def reset(self, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        await self.connect()
        seed = kwargs.pop("seed", None)
        request = BatchReset.message(ids=[self._id], seeds=[seed], options=to_plain(kwargs, keep_arrays=False) or None)
        reply = await self._connection.request(request, timeout)
        return self._payload(reply)

    async def step(self, action: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        if self._connection is None:
            raise ConnectionLost("not connected: call reset() first")
        reply = await self._connection.request(BatchStep.message(ids=[self._id], actions={k: [v] for k, v in action.items()}), timeout)
        return self._payload(reply)

    async def state(self) -> dict[str, Any]:
        if self._connection is None:
            raise ConnectionLost("not connected: call reset() first")
        return (await self._connection.request(BatchState.model_construct(ids=[self._id]))).states[0]

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        slots, self._slots = self._slots, None
        if connection is not None:
            await connection.close()
        if slots is not None:
            slots.close()

    async def close(self) -> None:
        """End the session (idempotent)."""
        await self._drop()


def single_payload(reply: BatchResult, slots: Any) -> dict[str, Any]:
    """A batch-of-one reply -> OpenEnv's payload; its row's error raised as :class:`~gym_openenv.ServerError`."""
    if reply.errors:
        error = reply.errors[0]
        raise ServerError(error.code, error.message, {"episode_lost": error.episode_lost})
    # One copy of each array, which the caller owns: off the frame's read-only bytes (a reply's
    # arrays are plain ndarrays: decode_msgpack makes them), or out of the shared slot (rewritten
    # at the next call; its view made once). (A plain loop: fewer instructions than a comprehension or C built-ins.)
    observation = {}
    for key, column in reply.observation.items():
        value = observation[key] = column[0]
        if type(value) is np.ndarray:
            observation[key] = value.copy()
    for key in reply.shm:
        if key in observation:
            observation[key] = slots.slot_views[key][slots.slot(0, reply.turn)].copy()
    metadata = reply.metadata[0] if reply.metadata else {}
    return {"observation": observation, "reward": reply.reward[0], "done": reply.done[0], "truncated": reply.truncated[0], "metadata": metadata}


#: A conversation with a batch server: yields requests, gets their replies, returns its result.
Exchange = Generator[BatchRequest, Any, T]


def opening(n: int, shared_memory: bool, max_reply_bytes: int) -> "Exchange[tuple[list[int], Any]]":
    """Open ``n`` sessions -> (their ids, the server's shared block for them or None).

    A block this process cannot map (another pid namespace or user) is declined:
    the sessions are closed and opened again with their arrays in the frames.
    """
    from gym_openenv.shm import MOST_TURNS, ObservationSlots  # only clients that take the batch path need it

    opened = yield BatchOpen.model_construct(n=n, shm=shared_memory, max_reply_bytes=max_reply_bytes, turns=MOST_TURNS if shared_memory else 1)
    if opened.shm is None:
        return opened.ids, None
    try:
        return opened.ids, ObservationSlots.open(opened.shm, opened.fd)
    except (OSError, ValueError, KeyError, TypeError):
        yield BatchClose.model_construct(ids=opened.ids)
        opened = yield BatchOpen.model_construct(n=n, shm=False, max_reply_bytes=max_reply_bytes)
        return opened.ids, None


async def run_async(exchange: "Exchange[T]", request: Callable[[BatchRequest], Coroutine[Any, Any, Any]]) -> T:
    """Carry out ``exchange`` with an async ``request`` (a connection's)."""
    try:
        message = next(exchange)
        while True:
            message = exchange.send(await request(message))
    except StopIteration as done:
        return done.value


def run_blocking(exchange: "Exchange[T]", call: Callable[[BatchRequest], Any]) -> T:
    """Carry out ``exchange`` with a blocking ``call`` (a direct connection's)."""
    try:
        message = next(exchange)
        while True:
            message = exchange.send(call(message))
    except StopIteration as done:
        return done.value


def same_machine(url: str) -> bool:
    """Whether a server URL is on this machine (loopback or a Unix socket)."""
    return Endpoint.parse(url).is_local


@dataclass
class StepResult(Generic[ObsT]):
    """OpenEnv's step result: the observation model plus reward and done."""

    observation: ObsT
    reward: float | None = None
    done: bool = False
    truncated: bool = False


class EnvClient(Generic[ActT, ObsT, StateT]):
    """A typed async client for one server, in OpenEnv's style.

    Subclasses name their models::

        class EchoEnv(EnvClient[EchoAction, EchoObservation, EchoState]):
            action_type, observation_type, state_type = EchoAction, EchoObservation, EchoState
    """

    action_type: ClassVar[type] = Action
    observation_type: ClassVar[type] = Observation
    state_type: ClassVar[type] = State
    #: What :meth:`launch` serves ("module:Class"); None: the registry entry of the
    #: folder this client is defined in (``gym_openenv/servers/<name>/client.py``).
    environment: ClassVar[str | None] = None

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT, token: str | None = None, provider: Any = None):
        self.session = AsyncSession(base_url, timeout=timeout, token=token)
        self._provider = provider
        self._arrays: dict[str, Any] | None = None

    @classmethod
    def launch(cls, **env_kwargs: Any) -> "EnvClient":
        """Start a local server process for this environment and connect to it."""
        from gym_openenv.providers import LocalProcessProvider

        provider = LocalProcessProvider(cls.served_environment(), env_kwargs)
        return cls(provider.start(), provider=provider)

    @classmethod
    def served_environment(cls) -> str:
        """What :meth:`launch` serves: :attr:`environment`, else the registry entry of
        the environment folder this client class is defined in.

        Raises:
            TypeError: neither names one; connect with a base_url instead.
        """
        if cls.environment is not None:
            return cls.environment
        import inspect
        from pathlib import Path

        from gym_openenv.registry import find_folder

        entry = find_folder(Path(inspect.getfile(cls)).parent)
        if entry is None:
            raise TypeError(f"{cls.__name__}: no known environment folder holds it and .environment is not set; pass a base_url instead")
        return entry.environment

    @classmethod
    def from_docker_image(cls, image: str, **options: Any) -> "EnvClient":
        """Run ``image`` in a container (as OpenEnv's ``from_docker_image``) and connect."""
        from gym_openenv.providers.docker import from_docker_image

        url, provider = from_docker_image(image, **options)
        return cls(url, provider=provider)

    async def _array_fields(self) -> dict[str, Any]:
        """Observation fields whose space is an array, from the server's /schema (once)."""
        if self._arrays is None:
            from gym_openenv.spaces import ModelSpec

            schema = await fetch_json(self.session.base_url, "/schema", self.session.token)
            spec = ModelSpec.from_json_schema(schema["observation"])
            self._arrays = {f.name: f.space for f in spec.space_fields if isinstance(f.space, _ARRAY_SPACES)}
        return self._arrays

    async def _observation(self, payload: dict[str, Any]) -> StepResult[ObsT]:
        fields = dict(payload.get("observation", {}))
        for name, space in (await self._array_fields()).items():
            if name in fields:  # JSON lists back into the arrays the model declares
                fields[name] = from_wire(space, fields[name])
        for key in ("reward", "done", "truncated", "metadata"):
            if key in payload:
                fields[key] = payload[key]
        return StepResult(self.observation_type(**fields), payload.get("reward"), bool(payload.get("done")), bool(payload.get("truncated")))

    async def reset(self, **kwargs: Any) -> StepResult[ObsT]:
        return await self._observation(await self.session.reset(**kwargs))

    async def step(self, action: ActT) -> StepResult[ObsT]:
        return await self._observation(await self.session.step(to_plain(action, keep_arrays=False)))

    async def stream_step(self, action: ActT) -> AsyncIterator[StepResult[ObsT]]:
        async for payload in self.session.stream_step(to_plain(action, keep_arrays=False)):
            yield await self._observation(payload)

    async def state(self) -> StateT:
        return self.state_type(**(await self.session.state()))

    async def close(self) -> None:
        await self.session.close()
        if self._provider is not None:
            self._provider.stop()

    async def __aenter__(self) -> "EnvClient":
        await self.session.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def sync(self) -> "SyncEnvClient":
        """A blocking facade running on the shared :class:`LoopThread`."""
        return SyncEnvClient(self)


class SyncEnvClient:
    """Blocking wrapper around an :class:`EnvClient`."""

    def __init__(self, client: EnvClient):
        self.client = client
        self._loop = LoopThread.shared()

    def reset(self, **kwargs: Any) -> StepResult:
        return self._loop.run(self.client.reset(**kwargs))

    def step(self, action: Any) -> StepResult:
        return self._loop.run(self.client.step(action))

    def state(self) -> Any:
        return self._loop.run(self.client.state())

    def close(self) -> None:
        self._loop.run(self.client.close())

    def __enter__(self) -> "SyncEnvClient":
        self._loop.run(self.client.session.connect())
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
