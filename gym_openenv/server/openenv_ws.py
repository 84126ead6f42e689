"""OpenEnv's WebSocket protocol: one connection, one session, JSON frames.

Every frame gets an answer; only ``close`` or a disconnect ends the session.
A step (reset, state) that passes the server's step timeout costs the session
its environment, not the connection: the reply is an ``EXECUTION_ERROR`` with
``episode_lost: true``, the session gets a new environment at once (the hung
one is closed when its call returns), and the client starts over with ``reset``.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import WebSocket, WebSocketDisconnect

from gym_openenv.protocol import (
    ErrorCode,
    IncomingMessage,
    ResetMessage,
    StepMessage,
    encode_json,
    error_reply,
    observation_payload,
)
from gym_openenv.server.mcp import MCPMessage, mcp_action, on_mcp_message
from gym_openenv.server.host import Client, EnvHost, StepTimeout
from gym_openenv.server.sessions import CapacityError, Session

__all__ = ["serve_openenv_session"]

_incoming = pydantic.TypeAdapter(IncomingMessage | MCPMessage)
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _SessionBroken(RuntimeError):
    pass


@dataclass
class _Connection:
    host: EnvHost
    client: Client
    session: Session
    send: Send

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on this session's environment, within the step timeout."""
        return await self.host.run(fn, *args, client=self.client, env=self.session.env, timeout=self.host.settings.step_timeout)


async def serve_openenv_session(ws: WebSocket, host: EnvHost, encode: Callable[[dict[str, Any]], str] = encode_json) -> None:
    """Serve one OpenEnv session for the lifetime of the connection.

    ``encode`` turns each reply into its text frame (the web page sends image
    fields as PNG this way).
    """
    await ws.accept()

    async def send(message: dict[str, Any]) -> None:
        await ws.send_text(encode(message))

    peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "unknown peer"
    client = host.client(f"/ws {peer}")
    try:
        session = await host.sessions.open(client)
    except CapacityError as e:
        await send(error_reply(ErrorCode.CAPACITY_REACHED, str(e), active_sessions=e.active, max_sessions=e.max_sessions))
        await ws.close(code=1013)
        return
    except Exception as e:  # the environment's constructor failed (or hung): tell the client why
        await send(error_reply(ErrorCode.FACTORY_ERROR, f"{type(e).__name__}: {e}"))
        await ws.close(code=1011)
        return
    connection = _Connection(host, client, session, send)
    try:
        while True:
            raw = await ws.receive()
            if raw["type"] == "websocket.disconnect":
                break
            text = raw.get("text")
            if text is None:
                await send(error_reply(ErrorCode.INVALID_JSON, "binary frames are not part of OpenEnv's protocol; send JSON text"))
                continue
            if not await _handle(text, connection):
                break
    except WebSocketDisconnect:
        pass
    finally:
        await host.sessions.close(session.id)


def _parse(text: str) -> tuple[Any, str | None]:
    """(message, None), or (None, why it is not JSON we can read)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"Invalid JSON: {e}"
    except RecursionError:
        return None, "Invalid JSON: nested too deeply"
    except ValueError as e:  # e.g. an integer over Python's digit limit
        return None, f"Invalid JSON: {e}"


async def _handle(text: str, connection: _Connection) -> bool:
    """Answer one frame; False ends the session."""
    send, session, host = connection.send, connection.session, connection.host
    raw, problem = _parse(text)
    if problem:
        await send(error_reply(ErrorCode.INVALID_JSON, problem))
        return True
    kind = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(kind, str) or (kind not in _HANDLERS and kind != "close"):
        await send(error_reply(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {kind!r}; expected one of reset, step, state, mcp, close"))
        return True
    try:
        message = _incoming.validate_python(raw)
    except pydantic.ValidationError as e:
        await send(error_reply(ErrorCode.VALIDATION_ERROR, "Invalid message", errors=_errors(e)))
        return True
    except RecursionError:
        await send(error_reply(ErrorCode.VALIDATION_ERROR, "Invalid message: nested too deeply"))
        return True
    if kind == "close":
        return False
    if not host.sessions.holds(session):
        await send(error_reply(ErrorCode.SESSION_ERROR, f"session expired after {host.settings.idle_timeout}s idle; reconnect"))
        return False
    session.busy += 1
    try:
        await _HANDLERS[kind](message, connection)
    except ValueError as e:  # the action or reset arguments did not validate
        await send(error_reply(ErrorCode.VALIDATION_ERROR, str(e)))
    except StepTimeout as e:
        await send(error_reply(ErrorCode.EXECUTION_ERROR, await _after_timeout(e, connection), episode_lost=e.env_lost))
    except _SessionBroken as e:
        await send(error_reply(ErrorCode.EXECUTION_ERROR, str(e)))
    except Exception as e:  # the environment raised: report it, keep the session
        await send(error_reply(ErrorCode.EXECUTION_ERROR, f"{type(e).__name__}: {e}"))
    finally:
        session.busy -= 1
        session.touch()
    return True


async def _after_timeout(e: StepTimeout, connection: _Connection) -> str:
    """Replace a lost environment; the error message for the client."""
    if not e.env_lost:
        return f"{e}; nothing ran, the session is unchanged"
    try:
        await connection.host.sessions.replace(connection.session, connection.client)
    except Exception as failure:
        return f"{e}; the episode is lost and no new environment could be built yet ({failure}); retry reset()"
    return f"{e}; the episode is lost: the session has a new environment, call reset()"


def _errors(e: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in e.errors()]


async def _usable(connection: _Connection) -> None:
    """Raise if the session has no working environment; retry a failed replacement first."""
    session = connection.session
    if session.broken or connection.host.is_lost(session.env):
        try:
            await connection.host.sessions.replace(session, connection.client)
        except Exception as e:
            raise _SessionBroken(f"{session.broken}: {type(e).__name__}: {e}") from None


async def _on_reset(message: ResetMessage, connection: _Connection) -> None:
    await _usable(connection)
    kwargs = connection.host.reset_kwargs(message.data)
    env = connection.session.env
    observation = await connection.call(lambda: env.reset(**kwargs))
    await connection.send({"type": "observation", "data": observation_payload(observation, keep_arrays=False)})


async def _on_step(message: StepMessage, connection: _Connection) -> None:
    await _usable(connection)
    action = mcp_action(connection.host.env_cls, message.data) or (await connection.host.specs()).action.build(message.data)
    env = connection.session.env
    if not message.stream:
        observation = await connection.call(env.step, action)
        await connection.send({"type": "observation", "data": observation_payload(observation, keep_arrays=False)})
        return
    # Partial observations cross from the worker thread through a queue; the
    # step timeout bounds the whole stream.
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def produce() -> None:
        try:
            for observation in env.stream_step(action):
                loop.call_soon_threadsafe(queue.put_nowait, ("obs", observation))
        except BaseException as e:  # delivered to the client as EXECUTION_ERROR
            loop.call_soon_threadsafe(queue.put_nowait, ("error", e))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

    producer = asyncio.ensure_future(connection.call(produce))
    last = None
    while True:
        kind, item = await _next_or_failure(queue, producer)
        if kind == "error":
            await producer
            raise item
        if kind == "end":
            break
        # Sent at once, so output reaches the client while the step runs; the
        # final "observation" repeats the last one as the step's result.
        await connection.send({"type": "partial_observation", "data": observation_payload(item, keep_arrays=False)})
        last = item
    await producer
    if last is None:
        raise RuntimeError(f"{type(env).__name__}.stream_step yielded nothing")
    await connection.send({"type": "observation", "data": observation_payload(last, keep_arrays=False)})


async def _next_or_failure(queue: asyncio.Queue, producer: asyncio.Future) -> tuple[str, Any]:
    """The next queued item; raises the producer's error (a step timeout) if it fails first.
    A producer that ends normally has queued ``("end", None)`` before its future completes."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    if not queue.empty():
        return queue.get_nowait()
    producer.result()  # raises StepTimeout (the thread is still inside stream_step)
    raise RuntimeError("stream_step ended without saying so")  # produce() always queues "end"


async def _on_state(message: Any, connection: _Connection) -> None:
    await _usable(connection)
    env = connection.session.env
    state = await connection.call(lambda: env.state)
    await connection.send({"type": "state", "data": state})


async def _on_mcp(message: MCPMessage, connection: _Connection) -> None:
    await on_mcp_message(message, connection.session, connection.host, connection.send)


_HANDLERS = {"reset": _on_reset, "step": _on_step, "state": _on_state, "mcp": _on_mcp}
