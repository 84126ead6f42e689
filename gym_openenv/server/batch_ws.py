"""The batched binary protocol: one connection, many sessions, msgpack frames.

Requests (``ids`` are session numbers local to the connection)::

    {"type": "open", "n": 8}                                 -> {"type": "opened", "ids": [...]}
    {"type": "reset", "ids": [...], "seeds": [...], "options": {...}}
    {"type": "step", "ids": [...], "actions": {field: column}} -> {"type": "batch", ...}
    {"type": "close", "ids": [...]}                          -> {"type": "closed", "ids": [...]}

A batch reply carries observations column by column (see
:func:`gym_openenv.protocol.batch_payload`) plus ``errors``: ``[[index, code,
message], ...]`` for sessions whose call failed. Closing the connection
closes its sessions.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from gym_openenv.protocol import (
    ErrorCode,
    batch_payload,
    decode_msgpack,
    encode_msgpack,
    error_reply,
    observation_payload,
)
from gym_openenv.server.host import EnvHost, StepTimeout
from gym_openenv.shm import ObservationSlots
from gym_openenv.server.sessions import CapacityError, Session

__all__ = ["serve_batch_connection"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class OpenRequest(_Request):
    type: Literal["open"]
    n: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    #: a client's shared observation slots (see gym_openenv.shm), when it runs on this machine
    shm: dict[str, Any] | None = None


class ResetRequest(_Request):
    type: Literal["reset"]
    ids: list[StrictInt]
    seeds: list[StrictInt | None] | None = None
    options: dict[str, Any] | None = None


class StepRequest(_Request):
    type: Literal["step"]
    ids: list[StrictInt]
    actions: dict[str, Any]


class CloseRequest(_Request):
    type: Literal["close"]
    ids: list[StrictInt]


BatchRequest = pydantic.TypeAdapter(
    Annotated[OpenRequest | ResetRequest | StepRequest | CloseRequest, Field(discriminator="type")]
)


class _BatchError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


class _Connection:
    def __init__(self, host: EnvHost):
        self.host = host
        self.sessions: dict[int, Session] = {}
        self._next_id = 0
        self.slots: ObservationSlots | None = None
        self.slot_of: dict[int, int] = {}  # session number -> slot in self.slots

    def lookup(self, ids: list[int]) -> list[Session]:
        unknown = [i for i in ids if i not in self.sessions]
        if unknown:
            raise _BatchError(ErrorCode.SESSION_ERROR, f"no open session(s) {unknown} on this connection")
        sessions = [self.sessions[i] for i in ids]
        for s in sessions:
            if s.broken:
                raise _BatchError(ErrorCode.EXECUTION_ERROR, s.broken)
            if self.host.sessions._sessions.get(s.id) is not s:
                raise _BatchError(ErrorCode.SESSION_ERROR, f"session {s.id} expired after {self.host.settings.idle_timeout}s idle")
        return sessions

    async def on_open(self, request: OpenRequest) -> dict[str, Any]:
        n = request.n
        table = self.host.sessions
        if table.active + n > table.max_sessions:
            # All or nothing: a vector env never half-starts.
            raise _BatchError(
                ErrorCode.CAPACITY_REACHED,
                f"cannot open {n} sessions: {table.active} of {table.max_sessions} in use",
            )
        opened = []
        try:
            for _ in range(n):
                opened.append(await table.open())
        except CapacityError as e:
            for s in opened:
                await table.close(s.id)
            raise _BatchError(ErrorCode.CAPACITY_REACHED, str(e)) from None
        except Exception as e:
            for s in opened:
                await table.close(s.id)
            raise _BatchError(ErrorCode.FACTORY_ERROR, f"{type(e).__name__}: {e}") from None
        ids = []
        for s in opened:
            self.sessions[self._next_id] = s
            ids.append(self._next_id)
            self._next_id += 1
        return {"type": "opened", "ids": ids, "shm": self._attach(request.shm, ids)}

    def _attach(self, description: dict[str, Any] | None, ids: list[int]) -> bool:
        """Use the client's shared slots if this process can reach them."""
        if description is None:
            return False
        try:
            slots = ObservationSlots.attach(description)
        except (OSError, ValueError, KeyError, TypeError):
            return False  # another machine or namespace: arrays stay in the frame
        if slots.count < len(ids):
            slots.close()
            return False
        if self.slots is not None:
            self.slots.close()
        self.slots, self.slot_of = slots, {i: k for k, i in enumerate(ids)}
        return True

    async def on_close(self, request: CloseRequest) -> dict[str, Any]:
        ids = [i for i in dict.fromkeys(request.ids) if i in self.sessions]
        for i in ids:
            await self.host.sessions.close(self.sessions.pop(i).id)
        return {"type": "closed", "ids": ids}

    async def close_all(self) -> None:
        await self.on_close(CloseRequest(type="close", ids=list(self.sessions)))
        if self.slots is not None:
            self.slots.close()
            self.slots = None

    async def on_reset(self, request: ResetRequest) -> dict[str, Any]:
        sessions = self.lookup(request.ids)
        seeds = request.seeds or [None] * len(sessions)
        options = request.options or {}
        if len(seeds) != len(sessions):
            raise _BatchError(ErrorCode.VALIDATION_ERROR, f"{len(seeds)} seeds for {len(sessions)} sessions")
        kwargs = [self.host.reset_kwargs({**options, **({} if s is None else {"seed": s})}) for s in seeds]

        def reset_all() -> list[Any]:
            return [_guarded(lambda s=s, kw=kw: s.env.reset(**kw)) for s, kw in zip(sessions, kwargs)]

        return await self._batch(sessions, reset_all, request.ids)

    async def on_step(self, request: StepRequest) -> dict[str, Any]:
        sessions = self.lookup(request.ids)
        if len(set(request.ids)) != len(request.ids):
            raise _BatchError(ErrorCode.VALIDATION_ERROR, f"duplicate session ids in {request.ids}")
        spec = (await self.host.specs()).action
        columns = request.actions
        for name, column in columns.items():
            if not isinstance(column, (list, tuple, np.ndarray)) or len(column) != len(sessions):
                raise _BatchError(ErrorCode.VALIDATION_ERROR, f"actions[{name!r}] must be a column of {len(sessions)} values")
        try:
            rows = [{k: _item(col, i) for k, col in columns.items()} for i in range(len(sessions))]
            actions = [spec.build(row) for row in rows]
        except (ValueError, IndexError, TypeError) as e:
            raise _BatchError(ErrorCode.VALIDATION_ERROR, str(e)) from None
        env_cls = self.host.env_cls
        envs = [s.env for s in sessions]
        if self.host.native_step_batch:
            def step_all() -> list[Any]:
                return env_cls.step_batch(envs, actions)
        else:
            def step_all() -> list[Any]:
                return [_guarded(lambda e=e, a=a: e.step(a)) for e, a in zip(envs, actions)]
        return await self._batch(sessions, step_all, request.ids)

    async def _batch(self, sessions: list[Session], call: Callable[[], list[Any]], ids: list[int]) -> dict[str, Any]:
        for s in sessions:
            s.busy += 1
        try:
            results = await self.host.run(call, timeout=self.host.settings.step_timeout)
        except StepTimeout as e:
            for s in sessions:
                s.broken = f"{e}; the sessions cannot continue, open new ones"
            raise _BatchError(ErrorCode.EXECUTION_ERROR, str(e)) from None
        except Exception as e:
            raise _BatchError(ErrorCode.EXECUTION_ERROR, f"{type(e).__name__}: {e}") from None
        finally:
            for s in sessions:
                s.busy -= 1
                s.touch()
        errors = [[i, ErrorCode.EXECUTION_ERROR.value, r.message] for i, r in enumerate(results) if isinstance(r, _Failed)]
        if errors:
            raise _BatchError(ErrorCode.EXECUTION_ERROR, "; ".join(f"session {i}: {m}" for i, _, m in errors))
        payloads = [observation_payload(r, keep_arrays=True) for r in results]
        in_slots = self._write_slots(payloads, ids)
        reply = batch_payload(payloads)
        reply["type"] = "batch"
        if in_slots:
            reply["shm"] = in_slots
        return reply

    def _write_slots(self, payloads: list[dict[str, Any]], ids: list[int]) -> list[str]:
        """Move array fields into the shared slots; their columns then travel as None."""
        if self.slots is None or not payloads or any(i not in self.slot_of for i in ids):
            return []
        written = []
        for key in self.slots.fields:
            if all(self.slots.fits(key, p["observation"].get(key)) for p in payloads):
                view = self.slots.views[key]
                for i, p in zip(ids, payloads):
                    view[self.slot_of[i]] = p["observation"][key]
                    p["observation"][key] = None
                written.append(key)
        return written


class _Failed:
    def __init__(self, message: str):
        self.message = message


def _guarded(call: Callable[[], Any]) -> Any:
    # One session's failure must not hide the others' results.
    try:
        return call()
    except Exception as e:
        return _Failed(f"{type(e).__name__}: {e}")


def _item(column: Any, i: int) -> Any:
    value = column[i]
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


_HANDLERS: dict[str, Callable[[_Connection, Any], Awaitable[dict[str, Any]]]] = {
    "open": _Connection.on_open,
    "reset": _Connection.on_reset,
    "step": _Connection.on_step,
    "close": _Connection.on_close,
}


async def serve_batch_connection(ws: WebSocket, host: EnvHost) -> None:
    """Serve batched requests until the client disconnects."""
    await ws.accept()
    connection = _Connection(host)
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                break
            reply = await _answer(connection, frame.get("bytes"))
            await ws.send_bytes(encode_msgpack(reply))
    except WebSocketDisconnect:
        pass
    finally:
        await connection.close_all()


async def _answer(connection: _Connection, raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return error_reply(ErrorCode.INVALID_JSON, "the batch protocol takes msgpack binary frames")
    try:
        request = decode_msgpack(raw)
    except Exception as e:  # msgpack raises several unrelated types for garbage
        return error_reply(ErrorCode.INVALID_JSON, f"invalid msgpack frame: {type(e).__name__}: {e}")
    kind = request.get("type") if isinstance(request, dict) else None
    handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        shown = kind if isinstance(kind, str) else type(request).__name__
        return error_reply(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {shown!r}; expected one of {sorted(_HANDLERS)}")
    try:
        typed = BatchRequest.validate_python(request)
    except pydantic.ValidationError as e:
        return error_reply(ErrorCode.VALIDATION_ERROR, f"invalid {kind} request: {e.errors(include_url=False)[0]['msg']} at {e.errors()[0]['loc']}")
    try:
        return await handler(connection, typed)
    except _BatchError as e:
        return error_reply(e.code, str(e))
