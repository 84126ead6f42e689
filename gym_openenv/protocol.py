"""Wire messages and codecs.

Two protocols share one server:

* **OpenEnv** (``/ws``, JSON text frames): ``reset``/``step``/``state``/``close``
  in, ``observation``/``state``/``error`` out, exactly as OpenEnv's own server
  and clients speak it. We add an optional ``"stream": true`` on ``step``,
  answered by ``partial_observation`` frames before the final ``observation``;
  plain OpenEnv clients never ask for it and never see it.
* **Batch** (``/ws/batch``, msgpack binary frames): one connection multiplexes
  many sessions and one frame resets or steps a batch of them. Arrays travel
  as raw bytes (:data:`NDARRAY_KEY`), observations column by column. Servers
  advertise it in ``/metadata`` under ``capabilities``; clients fall back to
  OpenEnv when it is absent.

An observation on the wire (both protocols) is OpenEnv's step payload plus
our keys: ``{"observation": {...fields}, "reward", "done", "truncated", "metadata"}``.
"""

import json
from enum import Enum
from typing import Annotated, Any, Literal

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gym_openenv.models import RESERVED_OBSERVATION_FIELDS
from gym_openenv.spaces import to_plain

__all__ = [
    "BATCH_CAPABILITY",
    "CloseMessage",
    "ErrorCode",
    "IncomingMessage",
    "NDARRAY_KEY",
    "ResetMessage",
    "StateMessage",
    "StepMessage",
    "decode_json",
    "decode_msgpack",
    "encode_json",
    "encode_msgpack",
    "error_reply",
    "observation_payload",
]

#: Name of the batched, binary protocol in ``/metadata``'s ``capabilities``.
BATCH_CAPABILITY = "batch-msgpack-v1"
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


def error_reply(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    """OpenEnv's error reply."""
    return {"type": "error", "data": {"message": message, "code": code.value, **extra}}


def observation_payload(observation: Any, *, keep_arrays: bool) -> dict[str, Any]:
    """An observation model -> OpenEnv's step payload (plus truncated/metadata)."""
    fields = to_plain(observation, keep_arrays=keep_arrays)
    reward = fields.pop("reward", None)
    return {
        "observation": {k: v for k, v in fields.items() if k not in RESERVED_OBSERVATION_FIELDS},
        "reward": None if reward is None else float(reward),
        "done": bool(fields.get("done", False)),
        "truncated": bool(fields.get("truncated", False)),
        "metadata": fields.get("metadata") or {},
    }


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
        return {NDARRAY_KEY: [array.dtype.str, list(array.shape)], NDARRAY_DATA: memoryview(array).cast("B")}
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


def encode_msgpack(message: Any) -> bytes:
    return msgpack.packb(message, default=_pack_default, use_bin_type=True)


def decode_msgpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, object_hook=_object_hook, raw=False, strict_map_key=False)


# --- batches: one frame, many sessions ----------------------------------------


def batch_payload(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-session observation payloads -> one columnar batch payload."""
    fields = payloads[0].get("observation", {}).keys() if payloads else ()
    # Foreign OpenEnv servers send only observation/reward/done: the rest defaults.
    metadata = [p.get("metadata") or {} for p in payloads]
    return {
        # Arrays stay one per session: each is copied once, into the frame, and
        # once more on the client, into its batch buffer (no stacking copy).
        "observation": {name: [p["observation"].get(name) for p in payloads] for name in fields},
        "reward": [p.get("reward") for p in payloads],
        "done": [bool(p.get("done")) for p in payloads],
        "truncated": [bool(p.get("truncated")) for p in payloads],
        "metadata": metadata if any(metadata) else None,
    }
