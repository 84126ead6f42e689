"""Wire messages and codecs.

Two protocols share one server:

* **OpenEnv** (``/ws``, JSON text frames): ``reset``/``step``/``state``/``close``
  in, ``observation``/``state``/``error`` out, exactly as OpenEnv's own server
  and clients speak it. We add an optional ``"stream": true`` on ``step``,
  answered by ``partial_observation`` frames before the final ``observation``;
  plain OpenEnv clients never ask for it and never see it.
* **Batch** (``/ws/batch``, msgpack binary frames): one connection multiplexes
  many sessions and one frame resets and steps a batch of them. Arrays travel
  as raw bytes (:data:`NDARRAY_KEY`), observations column by column, or in a
  shared-memory block the server created (:mod:`gym_openenv.shm`; a reply's
  ``turn`` says which of a session's slots holds its arrays). Servers
  advertise it in ``/metadata`` under ``capabilities``; clients fall back to
  OpenEnv when it is absent. Its requests and replies are the ``Batch*``
  models below, used by both the client and the server.
* **Direct** (a co-located server's own Unix socket, named in ``/metadata`` as
  ``direct_socket``): the batch protocol's messages without HTTP or WebSocket,
  each a length-prefixed frame (:mod:`gym_openenv.framing`). The connection
  starts with :class:`DirectHello` (the token) and its :class:`DirectWelcome`.
  The server answers on the thread that runs the environments and the client
  waits in the caller's thread: a round trip wakes one thread on each side.

An observation on the wire (both protocols) is OpenEnv's step payload plus
our keys: ``{"observation": {...fields}, "reward", "done", "truncated", "metadata"}``.
"""

import functools
import itertools
import json
import operator
from dataclasses import dataclass, field, is_dataclass
from enum import Enum
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter

from gym_openenv.models import RESERVED_OBSERVATION_FIELDS
from gym_openenv.shm import MOST_TURNS
from gym_openenv.spaces import field_names, metadata_json_fields, to_plain

__all__ = [
    "BATCH_CAPABILITY",
    "BatchClose",
    "BatchClosed",
    "BatchOpen",
    "BatchOpened",
    "BatchRequest",
    "BatchReset",
    "BatchResult",
    "BatchState",
    "BatchStates",
    "BatchStep",
    "DirectHello",
    "DirectWelcome",
    "RowError",
    "CloseMessage",
    "ErrorCode",
    "IncomingMessage",
    "NDARRAY_KEY",
    "ResetMessage",
    "StateMessage",
    "StepMessage",
    "decode_batch_reply",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "error_reply",
    "observation_from_json",
    "observation_payload",
    "parse_batch_request",
]

#: Name of the batched, binary protocol in ``/metadata``'s ``capabilities``.
BATCH_CAPABILITY = "batch-msgpack-v2"
#: An ndarray on the binary protocol is the map ``{NDARRAY_KEY: [dtype, shape], NDARRAY_DATA: <bin>}``:
#: the array's memory goes into the frame with one copy, and comes out as a view.
NDARRAY_KEY = "\x00nd"
NDARRAY_DATA = "\x00b"


class ErrorCode(str, Enum):
    """OpenEnv's error codes, sent in ``{"type": "error", "data": {"code": ...}}``."""

    INVALID_JSON = "INVALID_JSON"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    EXECUTION_ERROR = "EXECUTION_ERROR"
    CAPACITY_REACHED = "CAPACITY_REACHED"
    FACTORY_ERROR = "FACTORY_ERROR"
    SESSION_ERROR = "SESSION_ERROR"
    #: batch protocol only: the reply would exceed the client's frame limit
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    #: direct transport only: the hello's token is missing or wrong
    UNAUTHORIZED = "UNAUTHORIZED"


# --- OpenEnv messages (client -> server) --------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResetMessage(_Message):
    type: Literal["reset"] = "reset"
    data: dict[str, Any] = Field(default_factory=dict)


class StepMessage(_Message):
    type: Literal["step"] = "step"
    data: dict[str, Any]
    stream: bool = False


class StateMessage(_Message):
    type: Literal["state"] = "state"


class CloseMessage(_Message):
    type: Literal["close"] = "close"


IncomingMessage = Annotated[ResetMessage | StepMessage | StateMessage | CloseMessage, Field(discriminator="type")]


def error_reply(code: ErrorCode, message: str, seq: int | None = None, **extra: Any) -> dict[str, Any]:
    """OpenEnv's error reply; on the batch protocol it echoes the request's ``seq``."""
    reply: dict[str, Any] = {"type": "error", "data": {"message": message, "code": code.value, **extra}}
    if seq is not None:
        reply["seq"] = seq
    return reply


def observation_payload(observation: Any, *, keep_arrays: bool) -> dict[str, Any]:
    """An observation model -> OpenEnv's step payload (plus truncated/metadata).

    On OpenEnv JSON (``keep_arrays=False``) fields marked ``METADATA_IN_JSON`` go
    into ``observation["metadata"]``, where upstream's typed clients accept them.
    """
    shown = to_plain(observation, keep_arrays=keep_arrays)  # a fresh dict: the reserved keys are popped out of it
    reward = shown.pop("reward", None)
    done, truncated, metadata = shown.pop("done", False), shown.pop("truncated", False), shown.pop("metadata", None)
    moved = () if keep_arrays else metadata_json_fields(type(observation))
    if moved:
        shown["metadata"] = {k: shown.pop(k) for k in list(shown) if k in moved}
    return {
        "observation": shown,
        "reward": None if reward is None else float(reward),
        "done": bool(done),
        "truncated": bool(truncated),
        "metadata": metadata or {},
    }


def observation_from_json(payload: dict[str, Any]) -> dict[str, Any]:
    """A step payload read from OpenEnv JSON with the fields that
    :func:`observation_payload` moved into ``observation["metadata"]`` back in place."""
    observation = payload.get("observation")
    if not isinstance(observation, dict) or not isinstance(observation.get("metadata"), dict):
        return payload
    fields = dict(observation)
    return {**payload, "observation": {**fields.pop("metadata"), **fields}}


# --- codecs -------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    # Only reached for what json cannot encode itself: arrays, numpy scalars, models.
    return to_plain(obj, keep_arrays=False)


def encode_json(message: Any) -> str:
    return json.dumps(message, default=_json_default, allow_nan=True)


def decode_json(raw: str | bytes) -> Any:
    return json.loads(raw)


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        # memoryview: msgpack copies the bytes straight into the frame (no tobytes()).
        # (an empty array has no bytes to view: memoryview cannot cast a zero-size shape)
        data = memoryview(array).cast("B") if array.size else b""
        return {NDARRAY_KEY: [array.dtype.str, list(array.shape)], NDARRAY_DATA: data}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Enum):
        return obj.value
    raise TypeError(f"cannot encode {type(obj).__name__} on the binary protocol")


def _object_hook(obj: dict) -> Any:
    header = obj.get(NDARRAY_KEY)
    if header is None:
        return obj
    dtype, shape = header
    # A read-only view on the frame's bytes: no copy until the caller copies
    # it into its own (preallocated) buffer.
    return np.frombuffer(obj[NDARRAY_DATA], dtype=np.dtype(dtype)).reshape(shape)


#: msgpack packers not in use, reused: a packer per message (``msgpack.packb``) costs about
#: a third of encoding a step's request. A list, not a thread-local (whose reads and writes
#: cost more): ``pop`` and ``append`` are atomic under the GIL, so a packer is taken by one
#: message at a time, whichever thread packs it (one packed meanwhile, by another thread or a
#: signal handler, takes another or makes its own). There are at most as many as messages
#: were ever packed at once.
_free_packers: list[msgpack.Packer] = []
#: A packer whose buffer grew past this many bytes is let go after its message (its
#: buffer never shrinks: one large frame must not pin its size for the process's life).
_PACKER_KEEP_BYTES = 1 << 20


def encode_msgpack(message: Any) -> bytes:
    try:
        packer = _free_packers.pop()
    except IndexError:
        packer = msgpack.Packer(default=_pack_default, use_bin_type=True)
    frame = packer.pack(message)  # (a pack that raises leaves no packer behind)
    if len(frame) <= _PACKER_KEEP_BYTES:
        _free_packers.append(packer)
    return frame


def decode_msgpack(raw: bytes) -> Any:
    # (str values as str, raw=False, is msgpack's default since 1.0; an argument fewer to parse on every frame)
    return msgpack.unpackb(raw, object_hook=_object_hook, strict_map_key=False)


# --- the batch protocol: one connection, many sessions ------------------------
#
# Every request may carry ``seq`` (the client's request number); its reply
# echoes it, so a reply is never taken for another request's. ``ids`` are
# session numbers local to the connection. A reset/step reply has one row per
# session, resets first, each row its observation or its own error
# (:class:`RowError`): one failing environment never costs the others their
# step.

_Seq = Annotated[StrictInt, Field(ge=0, lt=2**63)]
_Ids = list[Annotated[StrictInt, Field(ge=0, lt=2**63)]]
_Seed = Annotated[StrictInt, Field(ge=0, lt=2**64)] | None


class BatchRequest(BaseModel):
    """Base of the batch protocol's requests."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    #: The request's ``type`` on the wire (its ``type`` field's default), read once per class:
    #: pydantic's ``model_fields`` costs a few thousand instructions per access, on every step's request.
    wire_type: ClassVar[str | None] = None

    seq: _Seq | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.wire_type = cls.model_fields["type"].default

    def wire(self) -> dict[str, Any]:
        """The frame's map (no validation: the client builds requests with ``model_construct``)."""
        return self.__dict__

    @classmethod
    def message(cls, **fields: Any) -> dict[str, Any]:
        """The frame's map of a request built by the client, without a model instance
        (for the per-step requests; the server validates it as this model). The sender adds its ``seq``."""
        fields["type"] = cls.wire_type
        return fields


class BatchOpen(BatchRequest):
    """Open ``n`` sessions (all or none); ``shm``: hand array fields over in shared memory."""

    type: Literal["open"] = "open"
    n: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    shm: StrictBool = False
    #: the largest frame the client accepts; a bigger reply becomes a MESSAGE_TOO_LARGE error
    max_reply_bytes: Annotated[StrictInt, Field(ge=1024)] | None = None
    #: the most slots per session the client reads in turn (a reply's ``turn``; see gym_openenv.shm);
    #: 1 for a client that knows no turns
    turns: Annotated[StrictInt, Field(ge=1, le=MOST_TURNS)] = 1

    def wire(self) -> dict[str, Any]:
        # Sent only when it says something: a server from before turns refuses a field it does not know.
        return self.__dict__ if self.turns != 1 else {k: v for k, v in self.__dict__.items() if k != "turns"}


class BatchReset(BatchRequest):
    """Reset sessions ``ids`` (``seeds`` aligned with them)."""

    type: Literal["reset"] = "reset"
    ids: _Ids
    seeds: list[_Seed] | None = None
    options: dict[str, Any] | None = None


class BatchStep(BatchRequest):
    """Reset ``reset_ids`` and step ``ids`` with ``actions`` (one column per field) in one call.

    ``autoreset``: a session whose step ends its episode is reset in the same
    call; its new first observation comes back in :attr:`BatchResult.autoreset`.
    """

    type: Literal["step"] = "step"
    ids: _Ids
    actions: dict[str, Any]
    reset_ids: _Ids = Field(default_factory=list)
    autoreset: StrictBool = False


class BatchState(BatchRequest):
    """The state (``episode_id``, ``step_count``, ...) of sessions ``ids``."""

    type: Literal["state"] = "state"
    ids: _Ids


class BatchClose(BatchRequest):
    type: Literal["close"] = "close"
    ids: _Ids


_REQUEST = TypeAdapter(Annotated[BatchOpen | BatchReset | BatchStep | BatchState | BatchClose, Field(discriminator="type")])


#: A decoded request frame -> its model (a :class:`BatchRequest`). Raises pydantic.ValidationError.
#: The core validator itself: no Python frame of ours per request.
parse_batch_request: Callable[[Any], BatchRequest] = _REQUEST.validator.validate_python


@dataclass
class RowError:
    """One session's failure in a batch reply.

    ``episode_lost``: the session's environment was replaced (its step hung);
    the next call on it must be a reset.
    """

    row: int
    code: str
    message: str
    episode_lost: bool = False

    def wire(self) -> list[Any]:
        return [self.row, self.code, self.message, self.episode_lost]

    @classmethod
    def from_wire(cls, item: list[Any]) -> "RowError":
        return cls(int(item[0]), str(item[1]), str(item[2]), bool(item[3]) if len(item) > 3 else False)


@dataclass
class BatchOpened:
    ids: list[int]
    #: the server's shared-memory block for these sessions (:meth:`gym_openenv.shm.ObservationSlots.describe`)
    shm: dict[str, Any] | None = None
    seq: int | None = None
    type: str = "opened"
    #: the block's descriptor, when it came with the frame (direct connections); the client's, never on the wire
    fd: int | None = field(default=None, repr=False)

    def wire(self) -> dict[str, Any]:
        return {"ids": self.ids, "shm": self.shm, "seq": self.seq, "type": self.type}


@dataclass
class BatchStates:
    states: list[dict[str, Any]]
    seq: int | None = None
    type: str = "states"


@dataclass
class BatchClosed:
    ids: list[int]
    seq: int | None = None
    type: str = "closed"


@dataclass
class BatchResult:
    """Rows of a reset/step call, column by column.

    An array column is a list of arrays, or ``None`` when the field is in
    ``shm`` (it is in the shared slots of the rows' sessions). A failed row
    has ``None`` in every column and an entry in ``errors``.
    """

    observation: dict[str, Any]
    reward: list[float | None]
    done: list[bool]
    truncated: list[bool]
    metadata: list[dict[str, Any]] | None = None
    errors: list[RowError] = field(default_factory=list)
    shm: list[str] = field(default_factory=list)
    #: same-step autoreset: rows whose episode ended, and the reset rows for them
    autoreset_rows: list[int] = field(default_factory=list)
    autoreset: "BatchResult | None" = None
    seq: int | None = None
    type: str = "batch"
    #: which of their sessions' slots the ``shm`` fields are in (:meth:`gym_openenv.shm.ObservationSlots.slot`)
    turn: int = 0

    def wire(self) -> dict[str, Any]:
        """The frame's map. What most replies lack (metadata, errors, autoreset rows) is left
        out rather than sent empty: every key costs both sides a string on every step."""
        message = {"type": self.type, "seq": self.seq, "observation": self.observation, "reward": self.reward, "done": self.done, "truncated": self.truncated}
        if self.metadata is not None:
            message["metadata"] = self.metadata
        if self.errors:
            message["errors"] = [e.wire() for e in self.errors]
        if self.shm:
            message["shm"] = self.shm
            if self.turn:
                message["turn"] = self.turn
        if self.autoreset is not None:
            message["autoreset_rows"], message["autoreset"] = self.autoreset_rows, self.autoreset.wire()
        return message

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> "BatchResult":
        # Positional arguments, and no list built for what a reply lacks: this runs on every step.
        truncated, errors, auto = message.get("truncated"), message.get("errors"), message.get("autoreset")
        return cls(
            message["observation"],
            message["reward"],
            message["done"],
            truncated if truncated else [False] * len(message["done"]),
            message.get("metadata"),
            [RowError.from_wire(e) for e in errors] if errors else [],
            message.get("shm") or [],
            message.get("autoreset_rows") or [],
            None if auto is None else cls.from_wire(auto),
            message.get("seq"),
            "batch",
            message.get("turn", 0),
        )

    @classmethod
    def of(cls, payloads: list[dict[str, Any] | None], fields: Any = None) -> "BatchResult":
        """Per-session observation payloads (``None`` for a failed row) -> columns.

        ``fields``: the observation field names; default: those of the first payload.
        """
        present = [p for p in payloads if p is not None]
        if fields is None:
            fields = present[0].get("observation", {}).keys() if present else ()
        empty: dict[str, Any] = {}
        rows = [empty if p is None else p for p in payloads]
        metadata = [p.get("metadata") or {} for p in rows]
        return cls(
            # Arrays stay one per session: each is copied once, into the frame
            # (or its shared slot), and once more on the client, into its batch buffer.
            observation={name: [p["observation"].get(name) if p else None for p in rows] for name in fields},
            reward=[p.get("reward") for p in rows],
            done=[bool(p.get("done")) for p in rows],
            truncated=[bool(p.get("truncated")) for p in rows],
            metadata=metadata if any(metadata) else None,
        )


_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})
#: values a reply carries as they are (arrays as raw bytes or in shared slots)
_AS_IS = _PLAIN_SCALARS | {np.ndarray}
_AS_IS_OR_LIST = _AS_IS | {list}


def observation_columns(observations: list[Any]) -> BatchResult:
    """Observations (``None`` for a failed row) -> a batch reply's columns, arrays kept as arrays.

    The same as ``BatchResult.of([observation_payload(o, keep_arrays=True), ...])``,
    read field by field from dataclass observations without a dict per row.

    Example:
        >>> from gym_openenv.servers.echo.models import EchoObservation
        >>> rows = [EchoObservation(echoed_message="hi", message_length=2, reward=0.5, metadata={"step": 1}), None]
        >>> columns = observation_columns(rows)
        >>> columns.observation, columns.reward, columns.metadata
        ({'echoed_message': ['hi', None], 'message_length': [2, None]}, [0.5, None], [{'step': 1}, {}])
        >>> columns == BatchResult.of([observation_payload(rows[0], keep_arrays=True), None])
        True
    """
    if len(observations) == 1:  # a gym.make step: its one row, without the zips that turn rows into columns
        reader = _row_reader(type(observations[0]))
        if reader is not None:
            return _one_row_columns(reader, observations[0])
    kinds = set(map(type, observations))
    failed = type(None) in kinds
    kinds.discard(type(None))
    reader = _row_reader(kinds.pop()) if len(kinds) == 1 else None
    if reader is None:  # no dataclass, or rows of several types
        return BatchResult.of([None if o is None else observation_payload(o, keep_arrays=True) for o in observations])
    names, read_row = reader
    # Row tuples read in C (attrgetter) and turned into columns by zip: the cost of a
    # reply hardly grows with its fields (a batch of one is the per-step cost of gym.make).
    if failed:
        missing = (None,) * (len(names) + 4)
        rows = [missing if o is None else read_row(o) for o in observations]
    else:
        rows = map(read_row, observations)
    *fields, rewards, dones, truncated, metadata = zip(*rows)
    plain_metadata = [{} if not m else to_plain(m, keep_arrays=True) for m in metadata] if any(metadata) else []
    values = list(itertools.chain.from_iterable(fields))  # chained in C: no bytecode per value
    return BatchResult(
        observation=dict(zip(names, map(list, fields))) if _sent_as_is(values) else {name: _plain_column(list(column)) for name, column in zip(names, fields)},
        reward=[None if r is None else float(r) for r in rewards] if None in rewards else list(map(float, rewards)),
        done=list(map(bool, dones)),  # a failed row's None is False
        truncated=list(map(bool, truncated)),
        metadata=plain_metadata if any(plain_metadata) else None,
    )


def _one_row_columns(reader: tuple[tuple[str, ...], Callable[[Any], tuple]], observation: Any) -> BatchResult:
    """:func:`observation_columns` of a batch of one (``reader``: its type's :func:`_row_reader`).
    Its few values are checked one by one, by the rule of :func:`_sent_as_is`: fewer steps
    than checking them all at once."""
    names, read_row = reader
    *fields, reward, done, truncated, metadata = read_row(observation)
    plain_metadata = to_plain(metadata, keep_arrays=True) if metadata else None
    return BatchResult(  # observation, reward, done, truncated, metadata (positional: keywords cost more, every step)
        {
            name: [v if type(v) in _AS_IS or (type(v) is list and _PLAIN_SCALARS.issuperset(map(type, v))) else to_plain(v, keep_arrays=True)]
            for name, v in zip(names, fields)
        },
        [None if reward is None else float(reward)],
        [bool(done)],
        [bool(truncated)],
        [plain_metadata] if plain_metadata else None,
    )


@functools.lru_cache(maxsize=None)
def _row_reader(kind: type) -> tuple[tuple[str, ...], Callable[[Any], tuple]] | None:
    """The observation fields of dataclass ``kind``, and a function reading an observation
    as the tuple ``(*fields, reward, done, truncated, metadata)``; None if ``kind`` is no dataclass."""
    if not is_dataclass(kind):
        return None
    names = tuple(name for name in field_names(kind) if name not in RESERVED_OBSERVATION_FIELDS)
    if "truncated" in field_names(kind):
        return names, operator.attrgetter(*names, "reward", "done", "truncated", "metadata")
    head = operator.attrgetter(*names, "reward", "done")  # a dataclass without our truncated field
    return names, lambda o: (*head(o), getattr(o, "truncated", False), o.metadata)


#: ``list`` for every value, to pick the values of type list with compress(), in C
_LIST_FOREVER = itertools.repeat(list)


def _sent_as_is(values: list[Any]) -> bool:
    """Whether every observation value is encodable as it is. In the common reply (scalars,
    arrays, lists of scalars) it is: the types are checked all at once (the items of list
    values too, the lists picked in C), with no bytecode per value."""
    if _AS_IS.issuperset(map(type, values)):  # (issuperset of an iterator builds no set)
        return True
    if not _AS_IS_OR_LIST.issuperset(map(type, values)):
        return False
    lists = itertools.compress(values, map(operator.is_, map(type, values), _LIST_FOREVER))
    return _PLAIN_SCALARS.issuperset(map(type, itertools.chain.from_iterable(lists)))


def _plain_column(values: list[Any]) -> list[Any]:
    """A column's values made encodable (the column as it is when :func:`_sent_as_is`)."""
    if _sent_as_is(values):
        return values
    return [v if type(v) in _PLAIN_SCALARS else to_plain(v, keep_arrays=True) for v in values]


def decode_batch_reply(raw: bytes) -> BatchOpened | BatchClosed | BatchStates | BatchResult | dict[str, Any]:
    """A batch reply frame -> its model; an error reply stays a dict (``{"type": "error", ...}``)."""
    message = decode_msgpack(raw)
    if not isinstance(message, dict):
        raise ValueError(f"a batch reply must be a map, got {type(message).__name__}")
    kind = message.get("type")
    if kind == "batch":
        return BatchResult.from_wire(message)
    if kind == "opened":
        return BatchOpened(ids=message["ids"], shm=message.get("shm"), seq=message.get("seq"))
    if kind == "closed":
        return BatchClosed(ids=message["ids"], seq=message.get("seq"))
    if kind == "states":
        return BatchStates(states=message["states"], seq=message.get("seq"))
    if kind == "error":
        return message
    raise ValueError(f"unknown batch reply type {kind!r}")


def batch_payload(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-session OpenEnv payloads -> one columnar payload (for the OpenEnv fallback)."""
    return BatchResult.of(payloads).__dict__


# --- the direct transport's hello (its frames: gym_openenv.framing) -----------


class DirectHello(BatchRequest):
    """The first frame on a direct socket: the server's token, the client's frame limit, and
    how long the server may spin waiting for each next request (seconds; see
    :class:`gym_openenv.framing.FrameReader`; the server caps it)."""

    type: Literal["hello"] = "hello"
    token: str | None = None
    max_reply_bytes: Annotated[StrictInt, Field(ge=1024)] | None = None
    spin: Annotated[float, Field(ge=0.0)] = 0.0


@dataclass
class DirectWelcome:
    """The reply to :class:`DirectHello`: which server this is (``/metadata``'s ``server_id``)."""

    server_id: str
    seq: int | None = None
    type: str = "welcome"
