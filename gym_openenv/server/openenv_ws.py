"""OpenEnv's WebSocket protocol: one connection, one session, JSON frames."""

import asyncio
import json
from collections.abc import Awaitable, Callable
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
from gym_openenv.server.host import EnvHost, StepTimeout
from gym_openenv.server.sessions import CapacityError, Session

__all__ = ["serve_openenv_session"]

_incoming = pydantic.TypeAdapter(IncomingMessage)
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _SessionBroken(RuntimeError):
    pass


async def serve_openenv_session(ws: WebSocket, host: EnvHost, encode: Callable[[dict[str, Any]], str] = encode_json) -> None:
    """Serve one OpenEnv session for the lifetime of the connection.

    ``encode`` turns each reply into its text frame (the web page sends image
    fields as PNG this way).
    """
    await ws.accept()

    async def send(message: dict[str, Any]) -> None:
        await ws.send_text(encode(message))

    try:
        session = await host.sessions.open()
    except CapacityError as e:
        await send(error_reply(ErrorCode.CAPACITY_REACHED, str(e), active_sessions=e.active, max_sessions=e.max_sessions))
        await ws.close(code=1013)
        return
    except Exception as e:  # the environment's constructor failed: tell the client why
        await send(error_reply(ErrorCode.FACTORY_ERROR, f"{type(e).__name__}: {e}"))
        await ws.close(code=1011)
        return
    try:
        while True:
            raw = await ws.receive()
            if raw["type"] == "websocket.disconnect":
                break
            text = raw.get("text")
            if text is None:
                await send(error_reply(ErrorCode.INVALID_JSON, "binary frames are not part of OpenEnv's protocol; send JSON text"))
                continue
            if not await _handle(text, session, host, send):
                break
    except WebSocketDisconnect:
        pass
    finally:
        await host.sessions.close(session.id)


async def _handle(text: str, session: Session, host: EnvHost, send: Send) -> bool:
    """Answer one frame; False ends the session."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        await send(error_reply(ErrorCode.INVALID_JSON, f"Invalid JSON: {e}"))
        return True
    kind = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(kind, str) or (kind not in _HANDLERS and kind != "close"):
        await send(error_reply(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {kind!r}; expected one of reset, step, state, close"))
        return True
    try:
        message = _incoming.validate_python(raw)
    except pydantic.ValidationError as e:
        await send(error_reply(ErrorCode.VALIDATION_ERROR, "Invalid message", errors=_errors(e)))
        return True
    if kind == "close":
        return False
    if host.sessions._sessions.get(session.id) is not session:
        await send(error_reply(ErrorCode.SESSION_ERROR, f"session expired after {host.settings.idle_timeout}s idle; reconnect"))
        return False
    session.busy += 1
    try:
        await _HANDLERS[kind](message, session, host, send)
    except ValueError as e:  # the action or reset arguments did not validate
        await send(error_reply(ErrorCode.VALIDATION_ERROR, str(e)))
    except StepTimeout as e:
        session.broken = f"{e}; the session cannot continue, open a new one"
        await send(error_reply(ErrorCode.EXECUTION_ERROR, session.broken))
    except _SessionBroken as e:
        await send(error_reply(ErrorCode.EXECUTION_ERROR, str(e)))
    except Exception as e:  # the environment raised: report it, keep the session
        await send(error_reply(ErrorCode.EXECUTION_ERROR, f"{type(e).__name__}: {e}"))
    finally:
        session.busy -= 1
        session.touch()
    return True


def _errors(e: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in e.errors()]


def _check_usable(session: Session) -> None:
    if session.broken:
        raise _SessionBroken(session.broken)


async def _on_reset(message: ResetMessage, session: Session, host: EnvHost, send: Send) -> None:
    _check_usable(session)
    kwargs = host.reset_kwargs(message.data)
    observation = await host.run(session.env.reset, timeout=host.settings.step_timeout, **kwargs)
    await send({"type": "observation", "data": observation_payload(observation, keep_arrays=False)})


async def _on_step(message: StepMessage, session: Session, host: EnvHost, send: Send) -> None:
    _check_usable(session)
    action = (await host.specs()).action.build(message.data)
    if not message.stream:
        observation = await host.run(session.env.step, action, timeout=host.settings.step_timeout)
        await send({"type": "observation", "data": observation_payload(observation, keep_arrays=False)})
        return
    # Partial observations cross from the worker thread through a queue.
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def produce() -> None:
        try:
            for observation in session.env.stream_step(action):
                loop.call_soon_threadsafe(queue.put_nowait, ("obs", observation))
        except BaseException as e:  # delivered to the client as EXECUTION_ERROR
            loop.call_soon_threadsafe(queue.put_nowait, ("error", e))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

    producer = asyncio.ensure_future(host.run(produce))
    last = None
    while True:
        kind, item = await queue.get()
        if kind == "error":
            await producer
            raise item
        if kind == "end":
            break
        # Sent at once, so output reaches the client while the step runs; the
        # final "observation" repeats the last one as the step's result.
        await send({"type": "partial_observation", "data": observation_payload(item, keep_arrays=False)})
        last = item
    await producer
    if last is None:
        raise RuntimeError(f"{type(session.env).__name__}.stream_step yielded nothing")
    await send({"type": "observation", "data": observation_payload(last, keep_arrays=False)})


async def _on_state(message: Any, session: Session, host: EnvHost, send: Send) -> None:
    state = await host.run(lambda: session.env.state, timeout=host.settings.step_timeout)
    await send({"type": "state", "data": state})


_HANDLERS = {"reset": _on_reset, "step": _on_step, "state": _on_state}
