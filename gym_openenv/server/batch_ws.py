"""The batched binary protocol: one connection, many sessions, msgpack frames.

Requests and replies are the ``Batch*`` models of :mod:`gym_openenv.protocol`::

    {"type": "open", "n": 8, "shm": true, "turns": 8} -> {"type": "opened", "ids": [...], "shm": {...}}
    {"type": "reset", "ids": [...], "seeds": [...], "options": {...}}
    {"type": "step", "ids": [...], "actions": {field: column}, "reset_ids": [...], "autoreset": false}
                                                    -> {"type": "batch", observation columns, "errors": [...], "shm": [...], "turn": 3}
    {"type": "state", "ids": [...]}                -> {"type": "states", "states": [...]}
    {"type": "close", "ids": [...]}                -> {"type": "closed", "ids": [...]}

Every reply echoes the request's ``seq``. Each row of a batch reply is its
session's result or its own error: an environment that raises fails its row
only, and one whose call passes the step timeout is replaced by a new
environment (its row says ``episode_lost``; the hung one is closed once its
call returns) while the rows after it still run. A frame that cannot be
parsed gets an error reply; the connection stays open. Closing the connection
closes its sessions and frees its shared-memory block.
"""

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Callable, Container, Generator
from typing import Any

import numpy as np
import pydantic
from fastapi import WebSocket, WebSocketDisconnect

from gym_openenv.protocol import (
    BatchClose,
    BatchClosed,
    BatchOpen,
    BatchOpened,
    BatchReset,
    BatchResult,
    BatchState,
    BatchStates,
    BatchStep,
    ErrorCode,
    RowError,
    decode_msgpack,
    encode_msgpack,
    error_reply,
    observation_columns,
    parse_batch_request,
)
from gym_openenv.server.host import EnvHost, StepTimeout
from gym_openenv.server.sessions import CapacityError, Session
from gym_openenv.shm import MIN_SHARED_BYTES, ObservationSlots, turns_for
from gym_openenv.spaces import to_plain

__all__ = ["serve_batch_connection"]

_NOT_RUN = object()
#: what an action column may be
_COLUMN_TYPES = (list, tuple, np.ndarray)
#: the replies whose frame is their wire(), not their fields
_WIRED_REPLIES = (BatchResult, BatchOpened)


class _BatchError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


class _Rows:
    """Environment calls of one request, run in order on worker threads.

    A call that passes the step timeout is given up on: its row fails, its
    thread is left to finish on its own (its result is dropped), and the rows
    after it run on a fresh worker. ``lock`` orders the worker's bookkeeping
    against the event loop giving up on a row.
    """

    def __init__(self, calls: list[Callable[[], Any]]):
        self.calls = calls
        self.results: list[Any] = [_NOT_RUN] * len(calls)
        self.hung: list[int] = []
        self.lock = threading.Lock()

    def _work(self, run: dict[str, Any], start: int) -> None:
        # One lock per row: a row's result is stored and the next row made current (or the
        # run finished, after the last) at once; there is nothing to give up on in between.
        lock, calls, results = self.lock, self.calls, self.results
        last = len(calls) - 1
        after = None
        try:
            with lock:
                if run["abandoned"] or start > last:
                    return
                run["current"] = i = start
            while True:
                try:  # one session's failure must not hide the others' results
                    result = calls[i]()
                except Exception as e:  # RecursionError included: the environment's error, reported on its row
                    result = _Failed(f"{type(e).__name__}: {_short(e)}")
                with lock:
                    if run["abandoned"]:
                        return  # this row was given up on: its result must not reappear
                    results[i] = result
                    if i == last:
                        run["finished"] = True
                        after = run.get("after")
                        break
                    run["current"] = i = i + 1
        finally:
            if not run["finished"]:  # only this thread sets it
                with lock:
                    run["finished"] = True
                    after = run.get("after")
            if after is not None:
                run["loop"].call_soon_threadsafe(after)

    async def run(self, host: EnvHost, client: Any, timeout: float | None) -> list[dict[str, Any]]:
        """Run every call; returns the runs given up on (their worker may still be busy)."""
        start, abandoned = 0, []
        loop = asyncio.get_running_loop()
        while start < len(self.calls):
            run: dict[str, Any] = {"abandoned": False, "current": None, "finished": False, "loop": loop}
            try:
                await host.run(self._work, run, start, client=client, timeout=timeout)
                return abandoned  # _work catches the environment's errors
            except StepTimeout:
                pass
            with self.lock:
                run["abandoned"] = True
                current = run["current"]
                finished = current is not None and self.results[current] is not _NOT_RUN
            abandoned.append(run)
            if current is None:  # never got one of this client's workers: nothing ran
                return abandoned
            if not finished:
                self.hung.append(current)
            start = current + 1
        return abandoned

    def when_done(self, run: dict[str, Any], callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop once ``run``'s worker has returned."""
        with self.lock:
            if not run["finished"]:
                run["after"] = callback
                return
        callback()


class _Job:
    """The environment calls one step of a plan needs, one per session (or, for
    an environment with a native ``step_batch``, one for all stepping sessions)."""

    def __init__(self, sessions: list[Session], calls: list[Callable[[], Any]], native: bool = False, first_step: int = 0):
        self.sessions = sessions
        self.calls = calls
        self.native = native  # the last call steps sessions[first_step:] at once
        self.first_step = first_step

    def begin(self) -> None:
        for s in self.sessions:  # busy sessions are never reaped
            s.busy += 1

    def end(self) -> None:
        now = time.monotonic()  # one clock read for the job: its sessions were all just active
        for s in self.sessions:
            s.busy -= 1
            s.last_active = now

    def outcome(self, call_results: list[Any], hung: Container[int], timeout: float | None) -> list[Any]:
        """One result per session: its observation or a :class:`RowError`."""
        results: list[Any] = call_results
        if self.native:
            results = list(call_results)
            batch = results.pop()
            count = len(self.sessions) - self.first_step
            if isinstance(batch, _Failed) or batch is _NOT_RUN or not isinstance(batch, list) or len(batch) != count:
                ok = isinstance(batch, _Failed) or batch is _NOT_RUN
                failure = batch if ok else _Failed(f"step_batch returned {type(batch).__name__}, not {count} observations")
                results += [failure] * count
            else:
                results += batch
        if not hung and _ROW_FAILURES.isdisjoint(map(type, results)):  # every call returned (the common case)
            return results
        return [
            RowError(i, ErrorCode.EXECUTION_ERROR.value, f"the environment call did not finish within {timeout}s; the session has a new environment, reset it", episode_lost=True)
            if i in hung
            else RowError(i, ErrorCode.EXECUTION_ERROR.value, r.message) if isinstance(r, _Failed)
            else RowError(i, ErrorCode.EXECUTION_ERROR.value, f"not run: no worker of this connection came free within {timeout}s (its earlier calls still hang)")
            if r is _NOT_RUN
            else r
            for i, r in enumerate(results)
        ]


#: A request's handling: yields the calls it needs, gets their results, returns the reply.
Plan = Generator[_Job, list[Any], Any]


class _Connection:
    def __init__(self, host: EnvHost, name: str):
        self.host = host
        self.client = host.client(name)
        self.sessions: dict[int, Session] = {}
        self._next_id = 0
        self.blocks: list[ObservationSlots] = []
        self.slot_of: dict[int, tuple[ObservationSlots, int]] = {}  # session number -> (block, its index k there)
        #: session number -> the slots its environment renders into (its observe_into mapping, ours)
        self.lent: dict[int, dict[str, np.ndarray]] = {}
        self.rotating: set[int] = set()  # sessions whose slots are used in turns
        self.turn = 0  # the turn of the last reset or step: which of their slots replies use
        self.max_reply_bytes: int | None = None
        self._closing: set[asyncio.Future] = set()

    # sessions

    def lookup(self, ids: list[int]) -> list[Session]:
        if not ids:
            return []
        if len(ids) == 1:  # a gym.make step: no duplicates to look for, no columns to map
            s = self.sessions.get(ids[0])
            if s is not None and not s.broken and self.host.sessions.holds(s):
                return [s]
        elif len(set(ids)) != len(ids):
            raise _BatchError(ErrorCode.VALIDATION_ERROR, f"duplicate session ids in {ids}")
        try:
            sessions = list(map(self.sessions.__getitem__, ids))
        except KeyError:
            unknown = list(itertools.filterfalse(self.sessions.__contains__, ids))  # (no comprehension: self would be a cell on every call)
            raise _BatchError(ErrorCode.SESSION_ERROR, f"no open session(s) {unknown} on this connection") from None
        holds = self.host.sessions.holds
        for i, s in zip(ids, sessions):
            if s.broken or not holds(s):
                if s.broken:  # its environment hung and no new one could be built
                    raise _BatchError(ErrorCode.SESSION_ERROR, f"session {i} cannot continue: {s.broken}; close it")
                raise _BatchError(ErrorCode.SESSION_ERROR, f"session {s.id} expired after {self.host.settings.idle_timeout}s idle")
        return sessions

    async def on_open(self, request: BatchOpen) -> BatchOpened:
        n = request.n
        table = self.host.sessions
        if table.active + n > table.max_sessions:
            # All or nothing: a vector env never half-starts.
            raise _BatchError(ErrorCode.CAPACITY_REACHED, f"cannot open {n} sessions: {table.active} of {table.max_sessions} in use")
        opened = []
        try:
            for _ in range(n):
                opened.append(await table.open(self.client))
        except CapacityError as e:
            await self._close_sessions(opened)
            raise _BatchError(ErrorCode.CAPACITY_REACHED, str(e)) from None
        except Exception as e:
            await self._close_sessions(opened)
            raise _BatchError(ErrorCode.FACTORY_ERROR, f"{type(e).__name__}: {e}") from None
        ids = list(range(self._next_id, self._next_id + n))
        self._next_id += n
        self.sessions.update(zip(ids, opened))
        if request.max_reply_bytes is not None:
            self.max_reply_bytes = request.max_reply_bytes
        return BatchOpened(ids=ids, shm=await self._create_slots(ids, request.turns) if request.shm else None)

    async def _create_slots(self, ids: list[int], most_turns: int) -> dict[str, Any] | None:
        """A shared block for the new sessions' array fields, created by this process."""
        fields = {
            f.name: (f.space.dtype.str, tuple(f.space.shape))
            for f in (await self.host.specs()).observation.space_fields
            if getattr(f.space, "dtype", None) is not None and getattr(f.space, "shape", None)
            and f.space.dtype.itemsize * int(np.prod(f.space.shape)) >= MIN_SHARED_BYTES
        }
        if not fields:
            return None
        slot_bytes = sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape in fields.values())
        turns = turns_for(len(ids), slot_bytes, most_turns)
        try:
            block = ObservationSlots.create(fields, len(ids), turns)
        except OSError:
            return None  # no memfd here: arrays travel in the frame
        self.blocks.append(block)
        self.slot_of.update({i: (block, k) for k, i in enumerate(ids)})
        if turns > 1:
            self.rotating.update(ids)
        for i in ids:
            self._lend_slot(i)
        return block.describe()

    def _lend_slot(self, i: int) -> None:
        """Let session ``i``'s environment render into its slot (``Environment.observe_into``)."""
        block, k = self.slot_of[i]
        slot = block.slot(k, self.turn)
        self.lent[i] = lent = {key: views[slot] for key, views in block.slot_views.items()}
        self.sessions[i].env.observe_into(lent)

    def _take_turn(self, ids: list[int]) -> None:
        """A new turn, if any of these sessions' slots rotate: their environments render into its slots."""
        turning = [i for i in ids if i in self.rotating]
        if not turning:
            return
        self.turn += 1
        for i in turning:
            block, k = self.slot_of[i]
            slot, lent = block.slot(k, self.turn), self.lent[i]
            for key, views in block.slot_views.items():  # the mapping lent to the environment: changed in place
                lent[key] = views[slot]

    async def on_close(self, request: BatchClose) -> BatchClosed:
        ids = [i for i in dict.fromkeys(request.ids) if i in self.sessions]
        await self._close_sessions([self.sessions.pop(i) for i in ids])
        for i in ids:
            self.slot_of.pop(i, None)
            self.lent.pop(i, None)
            self.rotating.discard(i)
        return BatchClosed(ids=ids)

    async def _close_sessions(self, sessions: list[Session]) -> None:
        for s in sessions:
            await self.host.sessions.close(s.id)

    async def close_all(self) -> None:
        await self._close_sessions(list(self.sessions.values()))
        self.sessions.clear()
        self.slot_of.clear()
        self.lent.clear()
        self.rotating.clear()
        for block in self.blocks:
            block.close()
        self.blocks = []

    # calls
    #
    # reset, step and state are plans: generators that yield the environment calls
    # they need (a :class:`_Job`) and get back each row's result. A driver runs the
    # calls: :meth:`drive` on worker threads for the WebSocket, or the direct
    # transport on its connection's own thread (gym_openenv.server.direct).

    def on_reset(self, request: BatchReset) -> "Plan":
        return self._call(request.ids, request.seeds, request.options, [], {}, autoreset=False)

    def on_step(self, request: BatchStep) -> "Plan":
        return self._call(request.reset_ids, None, None, request.ids, request.actions, request.autoreset)

    def on_state(self, request: BatchState) -> "Plan":
        sessions = self.lookup(request.ids)
        results = yield _Job(sessions, [lambda s=s: to_plain(s.env.state, keep_arrays=True) for s in sessions])
        failed = next((r for r in results if isinstance(r, RowError)), None)
        if failed is not None:
            raise _BatchError(ErrorCode(failed.code), f"session {request.ids[failed.row]}: {failed.message}")
        return BatchStates(states=results)

    def _call(self, reset_ids, seeds, options, step_ids, columns, autoreset) -> "Plan":
        resetting = self.lookup(reset_ids) if reset_ids else []  # most steps reset nothing
        stepping = self.lookup(step_ids)
        if resetting and stepping and set(reset_ids) & set(step_ids):
            raise _BatchError(ErrorCode.VALIDATION_ERROR, f"sessions {sorted(set(reset_ids) & set(step_ids))} both reset and stepped")
        calls: list[Callable[[], Any]] = []
        if resetting or seeds:  # most steps reset nothing (and have no seeds)
            seeds = seeds or [None] * len(resetting)
            if len(seeds) != len(resetting):
                raise _BatchError(ErrorCode.VALIDATION_ERROR, f"{len(seeds)} seeds for {len(resetting)} sessions")
            calls = self._reset_calls(resetting, seeds, options)
        actions = self._actions(columns, len(stepping))
        if self.rotating:
            self._take_turn(reset_ids + step_ids if resetting else step_ids)
        native = self.host.native_step_batch and bool(stepping)
        if native:  # one call; its result fans out to the rows
            calls.append(functools.partial(self.host.env_cls.step_batch, [s.env for s in stepping], actions))
        else:
            calls += map(functools.partial, _STEP_FOREVER, stepping, actions)  # partial(_step, session, action) per row, made in C
        sessions = resetting + stepping if resetting else stepping
        results = yield _Job(sessions, calls, native, len(resetting))
        ids = reset_ids + step_ids
        reply = self._reply(ids, results)
        if autoreset:
            ended = [r for r in range(len(resetting), len(sessions)) if reply.done[r] and not isinstance(results[r], RowError)]
            if ended:
                ended_ids = [ids[r] for r in ended]
                # The final frames sit in the slots, where an environment may render its reset:
                # keep them aside, send the reset frames in the frame, put the final ones back.
                finals = self._read_slots(ended_ids, reply.shm)
                again = yield _Job([sessions[r] for r in ended], [lambda s=sessions[r]: s.env.reset(**self.host.reset_kwargs({})) for r in ended])
                reply.autoreset_rows = ended
                reply.autoreset = self._reply(ended_ids, again, use_slots=False)
                self._write_back(finals)
        return reply

    def _reset_calls(self, sessions: list[Session], seeds: list[int | None], options: dict[str, Any] | None) -> list[Callable[[], Any]]:
        # (a method of its own: the comprehensions' use of options would make it a cell of
        # _call, one more object on every step)
        reset_kwargs = [self.host.reset_kwargs({**(options or {}), **({} if s is None else {"seed": s})}) for s in seeds]
        return [lambda s=s, kw=kw: s.env.reset(**kw) for s, kw in zip(sessions, reset_kwargs)]

    def _read_slots(self, ids: list[int], keys: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(slot view, copy of its content) for ``keys`` of sessions ``ids``, in this turn's slots."""
        places = [self.slot_of[i] for i in ids if i in self.slot_of]
        views = [block.views[key][block.slot(k, self.turn)] for block, k in places for key in keys]
        return [(view, view.copy()) for view in views]

    @staticmethod
    def _write_back(saved: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for view, content in saved:
            view[...] = content

    def _actions(self, columns: dict[str, Any], n: int) -> list[Any]:
        if not n:
            return []
        spec = self.host.known_specs.action  # known: the sessions' environments exist
        for name, column in columns.items():
            if not isinstance(column, _COLUMN_TYPES) or len(column) != n:
                raise _BatchError(ErrorCode.VALIDATION_ERROR, f"actions[{name!r}] must be a column of {n} values")
        try:
            return spec.build_batch(columns, n)
        except (ValueError, IndexError, TypeError, RecursionError) as e:
            raise _BatchError(ErrorCode.VALIDATION_ERROR, f"{type(e).__name__}: {e}") from None

    async def drive(self, plan: "Plan") -> Any:
        """Run a plan's calls on worker threads (the WebSocket's driver); its reply."""
        try:
            job = next(plan)
            while True:
                job = plan.send(await self._run(job))
        except StopIteration as done:
            return done.value

    async def _run(self, job: "_Job") -> list[Any]:
        """Each session's observation, or a :class:`RowError` for it."""
        job.begin()
        rows = _Rows(job.calls)
        try:
            abandoned = await rows.run(self.host, self.client, self.host.settings.step_timeout)
        finally:
            job.end()
        return await self.settle(job, rows, abandoned)

    async def settle(self, job: "_Job", rows: "_Rows", abandoned: list[dict[str, Any]]) -> list[Any]:
        """The rows' results once their calls ran: hung sessions get new environments."""
        hung: set[int] = set()
        for h in rows.hung:  # call h hung: the sessions it touched (all stepping ones for a native batch)
            touched = [h] if not job.native or h < job.first_step else range(job.first_step, len(job.sessions))
            run = next(r for r in abandoned if r["current"] == h)
            for i in touched:
                hung.add(i)
                await self._replace(job.sessions[i], rows, run)
        return job.outcome(rows.results, hung, self.host.settings.step_timeout)

    async def _replace(self, session: Session, rows: _Rows, run: dict[str, Any]) -> None:
        """A new environment for a session whose call hung; the old one is closed when that call returns."""
        old = session.env
        old.observe_into({})  # its step may still finish: not into the slot the new environment gets
        try:
            session.env = await self.host.create_env(self.client)
        except Exception as e:
            session.broken = f"its environment hung and no new one could be built: {type(e).__name__}: {e}"
            return
        number = next((i for i, s in self.sessions.items() if s is session), None)
        if number in self.slot_of:
            self._lend_slot(number)

        def close_old() -> None:
            task = asyncio.ensure_future(self.host.close_env(old))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        # The worker that hung: only once it has returned is `old` free to close (ALE, Playwright...).
        rows.when_done(run, close_old)

    def _reply(self, ids: list[int], results: list[Any], use_slots: bool = True) -> BatchResult:
        errors = [RowError(row, r.code, r.message, r.episode_lost) for row, r in enumerate(results) if isinstance(r, RowError)] if RowError in set(map(type, results)) else []
        # The copies below only when a row failed: the common reply has no failed row.
        reply = observation_columns([None if isinstance(r, RowError) else r for r in results] if errors else results)
        reply.errors = errors
        if use_slots:
            reply.shm = self._write_slots(reply.observation, ids, {e.row for e in errors} if errors else ())
            reply.turn = self.turn
        else:  # arrays travel in the frame; copied, as an environment may have rendered them into its slot
            for name, column in reply.observation.items():
                reply.observation[name] = [v.copy() if isinstance(v, np.ndarray) else v for v in column]
        return reply

    def _write_slots(self, columns: dict[str, list[Any]], ids: list[int], failed: Container[int]) -> list[str]:
        """Move array fields into the sessions' shared slots (not those of the ``failed`` rows);
        their columns then travel as None."""
        places = list(map(self.slot_of.get, ids))
        if None in places:
            return []
        turn = self.turn
        rows = [(r, block, block.slot(k, turn)) for r, (block, k) in enumerate(places) if r not in failed]
        if not rows:
            return []
        written = []
        for key in rows[0][1].fields:
            column = columns.get(key)
            if column is None:
                continue
            # Environments that render into their slots (observe_into) returned the slots themselves.
            # Plain loops, not all() over generators: a generator costs more than one row's check.
            rendered = True
            for r, block, slot in rows:
                if column[r] is not block.slot_views[key][slot]:
                    rendered = False
                    break
            fits = rendered
            if not rendered:
                fits = True
                for r, block, _ in rows:
                    if not block.fits(key, column[r]):
                        fits = False
                        break
            if fits:
                for r, block, slot in rows:
                    if not rendered:
                        block.write(key, slot, column[r])
                    column[r] = None
                written.append(key)
        return written


class _Failed:
    def __init__(self, message: str):
        self.message = message


#: the types of a call's result that are no observation: a failed call's, a call not run's (_NOT_RUN)
_ROW_FAILURES = frozenset({_Failed, object})


def _step(session: Session, action: Any) -> Any:
    """One row's step call. The environment is read when the call runs, as in every call of a job."""
    return session.env.step(action)


#: ``_step`` for every row, to make the step calls with map()
_STEP_FOREVER = itertools.repeat(_step)


def _short(error: BaseException, limit: int = 2000) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


#: request type -> (handler, whether it is a plan); plans' calls run on the driver's threads
_HANDLERS: dict[str, tuple[Callable[[_Connection, Any], Any], bool]] = {
    "open": (_Connection.on_open, False),
    "reset": (_Connection.on_reset, True),
    "step": (_Connection.on_step, True),
    "state": (_Connection.on_state, True),
    "close": (_Connection.on_close, False),
}


async def serve_batch_connection(ws: WebSocket, host: EnvHost) -> None:
    """Serve batched requests until the client disconnects."""
    await ws.accept()
    peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "unknown peer"
    connection = _Connection(host, f"/ws/batch {peer}")
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                break
            await ws.send_bytes(await _answer(connection, frame.get("bytes")))
    except WebSocketDisconnect:
        pass
    finally:
        await connection.close_all()


async def _answer(connection: _Connection, raw: bytes | None) -> bytes:
    """One reply frame for one request frame, whatever the frame holds."""
    request = parse_frame(raw)
    if isinstance(request, bytes):
        return request
    seq, typed = request
    handler, is_plan = _HANDLERS[typed.type]
    try:
        reply = await (connection.drive(handler(connection, typed)) if is_plan else handler(connection, typed))
    except _BatchError as e:
        return encode_msgpack(error_reply(e.code, str(e), seq))
    return reply_frame(connection, reply, seq)


def parse_frame(raw: bytes | bytearray | None) -> tuple[int | None, Any] | bytes:
    """A request frame -> (its seq, its typed request), or the error reply frame for it."""
    if raw is None:
        return encode_msgpack(error_reply(ErrorCode.INVALID_JSON, "the batch protocol takes msgpack binary frames"))
    try:
        request = decode_msgpack(raw)
    except Exception as e:  # msgpack raises several unrelated types for garbage (and RecursionError for deep nesting)
        return encode_msgpack(error_reply(ErrorCode.INVALID_JSON, f"invalid msgpack frame: {type(e).__name__}: {_short(e, 300)}"))
    if type(request) is dict:  # msgpack maps are plain dicts
        seq, kind = request.get("seq"), request.get("type")
        seq = seq if type(seq) is int and 0 <= seq < 2**63 else None  # type(): no bool
    else:
        seq = kind = None
    if not isinstance(kind, str) or kind not in _HANDLERS:
        shown = kind if isinstance(kind, str) else type(request).__name__
        return encode_msgpack(error_reply(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {shown!r}; expected one of {sorted(_HANDLERS)}", seq))
    try:
        return seq, parse_batch_request(request)
    except pydantic.ValidationError as e:
        first = e.errors(include_url=False)[0]
        return encode_msgpack(error_reply(ErrorCode.VALIDATION_ERROR, f"invalid {kind} request: {first['msg']} at {first['loc']}", seq))
    except RecursionError:
        return encode_msgpack(error_reply(ErrorCode.VALIDATION_ERROR, f"invalid {kind} request: nested too deep", seq))


def reply_frame(connection: _Connection, reply: Any, seq: int | None) -> bytes:
    """A reply model -> its frame, or ``MESSAGE_TOO_LARGE`` when it is over the client's limit."""
    reply.seq = seq
    frame = encode_msgpack(reply.wire() if isinstance(reply, _WIRED_REPLIES) else reply.__dict__)
    limit = connection.max_reply_bytes
    if limit is not None and len(frame) > limit:
        return encode_msgpack(error_reply(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"the reply is {len(frame)} bytes, over the client's limit of {limit}; "
            "step fewer sessions per call or raise the client's max_message_bytes",
            seq,
        ))
    return frame
