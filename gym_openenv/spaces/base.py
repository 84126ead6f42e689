"""Spaces described as JSON, and values between a space and the wire.

The building blocks under :mod:`gym_openenv.spaces`: how a space travels in a
schema (``x-gym-space``), the plain JSON schema of its values, and the
conversions of one value between gymnasium and the wire.
"""

import dataclasses
import functools
import string
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np
import pydantic
from gymnasium import spaces

__all__ = [
    "DEFAULT_CHARSET",
    "DEFAULT_TEXT_MAX_LENGTH",
    "FLAT_IN_JSON",
    "METADATA_IN_JSON",
    "NOT_IN_SPACE",
    "SHORTER_ACCEPTED",
    "SPACE_KEY",
    "FieldMarker",
    "contains",
    "describe",
    "field_names",
    "field_types",
    "from_wire",
    "metadata_json_fields",
    "space_from_json",
    "space_json_schema",
    "space_to_json",
    "text",
    "text_contains",
    "text_contains_all",
    "to_plain",
]

#: Printable ASCII plus whitespace and the Latin-1 to box-drawing range: wide
#: enough for program output and chat, small enough for ``Text.sample``.
DEFAULT_CHARSET = "".join(sorted(set(string.printable) | {chr(c) for c in range(0xA0, 0x2600)}))
DEFAULT_TEXT_MAX_LENGTH = 65536
#: The schema key beside a field's JSON schema that carries its space (``null``: no space).
SPACE_KEY = "x-gym-space"

class FieldMarker:
    """A marker for ``Annotated`` model fields, beside or instead of a space."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The field is never part of the space: observations carry it in ``info``,
#: actions accept it as an optional extra (its ``/schema`` entry has ``x-gym-space: null``).
NOT_IN_SPACE = FieldMarker("NOT_IN_SPACE")
#: The array field travels as one flat list over OpenEnv JSON, as upstream
#: clients expect (Atari's ``screen``); its space keeps the shape.
FLAT_IN_JSON = FieldMarker("FLAT_IN_JSON")
#: The server also takes an action array with fewer items along its first axis than
#: the space's shape (upstream chat_env's variable-length token list); the model
#: gets the shorter array. Longer arrays stay refused.
SHORTER_ACCEPTED = FieldMarker("SHORTER_ACCEPTED")
#: Over OpenEnv JSON the observation field travels inside the observation's
#: ``metadata`` object, for upstream typed clients whose observation model forbids
#: fields it does not declare (coding_env's); our client puts it back beside the
#: others (:func:`gym_openenv.protocol.observation_from_json`), the binary protocol
#: never moves it, and its space and ``/schema`` entry stay as they are.
METADATA_IN_JSON = FieldMarker("METADATA_IN_JSON")


def text(max_length: int = DEFAULT_TEXT_MAX_LENGTH, min_length: int = 0) -> spaces.Text:
    """A ``Text`` space with :data:`DEFAULT_CHARSET` (gymnasium's default is alphanumeric only)."""
    return spaces.Text(max_length, min_length=min_length, charset=DEFAULT_CHARSET)


# --- space <-> JSON -----------------------------------------------------------


@functools.singledispatch
def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """Describe a space as JSON so a remote client rebuilds the same space."""
    raise TypeError(f"no JSON form for space {space!r}")


@space_to_json.register
def _(space: spaces.Box) -> dict[str, Any]:
    return {
        "type": "Box",
        "shape": list(space.shape),
        "dtype": space.dtype.str,
        "low": _bound_to_json(space.low),
        "high": _bound_to_json(space.high),
    }


def _bound_to_json(bound: np.ndarray) -> Any:
    # A uniform bound travels as one number; inf is spelled out for JSON.
    flat = bound.reshape(-1)
    if flat.size and (flat == flat[0]).all():
        return _float_to_json(flat[0].item())
    return [_float_to_json(x) for x in flat.tolist()]


def _float_to_json(x: float) -> float | str:
    if isinstance(x, float) and np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


@space_to_json.register
def _(space: spaces.Discrete) -> dict[str, Any]:
    return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}


@space_to_json.register
def _(space: spaces.MultiBinary) -> dict[str, Any]:
    return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}


@space_to_json.register
def _(space: spaces.MultiDiscrete) -> dict[str, Any]:
    return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "dtype": space.dtype.str, "start": space.start.tolist()}


@space_to_json.register
def _(space: spaces.Text) -> dict[str, Any]:
    charset = "".join(sorted(space.character_set))
    return {
        "type": "Text",
        "max_length": space.max_length,
        "min_length": space.min_length,
        "charset": "default" if charset == DEFAULT_CHARSET else charset,
    }


@space_to_json.register
def _(space: spaces.Dict) -> dict[str, Any]:
    return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}


@space_to_json.register
def _(space: spaces.Tuple) -> dict[str, Any]:
    return {"type": "Tuple", "spaces": [space_to_json(s) for s in space.spaces]}


@space_to_json.register
def _(space: spaces.Sequence) -> dict[str, Any]:
    return {"type": "Sequence", "feature": space_to_json(space.feature_space), "stack": space.stack}


def space_from_json(desc: Mapping[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_json`."""
    build = _FROM_JSON.get(desc.get("type"))
    if build is None:
        raise ValueError(f"unknown space description: {dict(desc)!r}")
    return build(desc)


def _box_from_json(desc: Mapping[str, Any]) -> spaces.Box:
    dtype = np.dtype(desc["dtype"])
    shape = tuple(desc["shape"])
    low, high = (_bound_from_json(desc[k], shape, dtype) for k in ("low", "high"))
    return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def _text_from_json(desc: Mapping[str, Any]) -> spaces.Text:
    charset = desc.get("charset", "default")
    return spaces.Text(desc["max_length"], min_length=desc.get("min_length", 0), charset=DEFAULT_CHARSET if charset == "default" else charset)


_FROM_JSON: dict[str, Any] = {
    "Box": _box_from_json,
    "Discrete": lambda d: spaces.Discrete(d["n"], start=d.get("start", 0)),
    "MultiBinary": lambda d: spaces.MultiBinary(d["n"]),
    "MultiDiscrete": lambda d: spaces.MultiDiscrete(d["nvec"], dtype=d.get("dtype", "int64"), start=d.get("start")),
    "Text": _text_from_json,
    "Dict": lambda d: spaces.Dict({k: space_from_json(v) for k, v in d["spaces"].items()}),
    "Tuple": lambda d: spaces.Tuple([space_from_json(v) for v in d["spaces"]]),
    "Sequence": lambda d: spaces.Sequence(space_from_json(d["feature"]), stack=d.get("stack", False)),
}


def _bound_from_json(bound: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    def num(x: Any) -> float:
        return float(x) if isinstance(x, str) else x

    if isinstance(bound, list):
        values = np.array([num(x) for x in bound], dtype=np.float64).reshape(shape)
    else:
        values = np.full(shape, num(bound), dtype=np.float64)
    if np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    return values.astype(dtype)


@functools.singledispatch
def space_json_schema(space: spaces.Space) -> dict[str, Any]:
    """A plain JSON schema for values of ``space`` (what a foreign client reads)."""
    return {}


@space_json_schema.register
def _(space: spaces.Box) -> dict[str, Any]:
    kind = "integer" if np.issubdtype(space.dtype, np.integer) else "number"
    schema: dict[str, Any] = {"type": kind}
    for dim in reversed(space.shape):
        schema = {"type": "array", "items": schema, "minItems": dim, "maxItems": dim}
    return schema


@space_json_schema.register
def _(space: spaces.Discrete) -> dict[str, Any]:
    start = int(space.start)
    return {"type": "integer", "minimum": start, "maximum": start + int(space.n) - 1}


@space_json_schema.register
def _(space: spaces.Text) -> dict[str, Any]:
    return {"type": "string", "minLength": space.min_length, "maxLength": space.max_length}


@space_json_schema.register
def _(space: spaces.Dict) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: space_json_schema(s) for k, s in space.spaces.items()},
        "required": list(space.spaces),
    }


# --- values: wire <-> space ---------------------------------------------------


_SCALARS = frozenset({str, int, float, bool, type(None)})


def to_plain(value: Any, *, keep_arrays: bool) -> Any:
    """Make ``value`` encodable: numpy scalars become Python numbers; arrays
    become lists (JSON) or stay arrays (binary codec, sent as raw bytes)."""
    kind = type(value)
    if kind in _SCALARS:  # the common case first: this runs for every field of every step
        return value
    convert = _PLAIN_BY_TYPE.get(kind)
    if convert is None:
        convert = _PLAIN_BY_TYPE.setdefault(kind, _plain_converter(kind))
    return convert(value, keep_arrays)


def _plain_converter(kind: type) -> Any:
    """How :func:`to_plain` converts values of type ``kind`` (decided once per type)."""
    if kind is dict or issubclass(kind, Mapping):
        return _plain_mapping
    if issubclass(kind, np.ndarray):
        return _plain_array
    if issubclass(kind, np.generic):
        return lambda value, keep_arrays: value.item()
    if issubclass(kind, (list, tuple)):
        return _plain_sequence
    if dataclasses.is_dataclass(kind):
        return _dataclass_converter(kind)
    if issubclass(kind, pydantic.BaseModel):
        return lambda value, keep_arrays: to_plain(value.model_dump(), keep_arrays=keep_arrays)
    return lambda value, keep_arrays: value


#: type -> its converter for :func:`to_plain`; filled on first sight of each type.
_PLAIN_BY_TYPE: dict[type, Any] = {}


def _plain_mapping(value: Mapping, keep_arrays: bool) -> dict[str, Any]:
    return {str(k): v if type(v) in _SCALARS else to_plain(v, keep_arrays=keep_arrays) for k, v in value.items()}


def _plain_sequence(value: list | tuple, keep_arrays: bool) -> list[Any]:
    return [v if type(v) in _SCALARS else to_plain(v, keep_arrays=keep_arrays) for v in value]


def _plain_array(value: np.ndarray, keep_arrays: bool) -> Any:
    if keep_arrays:
        return value
    return value.reshape(-1).tolist() if isinstance(value, FlatInJSONArray) else value.tolist()


def _dataclass_converter(kind: type) -> Any:
    """A dataclass instance -> {field: plain value}; ``FLAT_IN_JSON`` arrays marked as such."""
    flat = _flat_json_fields(kind)
    fields = tuple((name, name in flat) for name in field_names(kind))

    def convert(value: Any, keep_arrays: bool) -> dict[str, Any]:
        plain = {}
        for name, flat_in_json in fields:
            v = getattr(value, name)
            if type(v) in _SCALARS:
                plain[name] = v
            else:
                plain[name] = to_plain(_flat_in_json(v) if flat_in_json else v, keep_arrays=keep_arrays)
        return plain

    return convert


@functools.lru_cache(maxsize=None)
def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass or pydantic model, computed once per class."""
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return tuple(cls.model_fields)


def field_types(cls: type) -> dict[str, Any]:
    """The annotated field types of a dataclass or pydantic model."""
    hints = typing.get_type_hints(cls, include_extras=True)
    if dataclasses.is_dataclass(cls):
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return {name: hints.get(name, info.annotation) for name, info in cls.model_fields.items()}


@functools.lru_cache(maxsize=None)
def _flat_json_fields(cls: type) -> frozenset[str]:
    return frozenset(name for name, tp in field_types(cls).items() if FLAT_IN_JSON in markers(tp))


@functools.lru_cache(maxsize=None)
def metadata_json_fields(cls: type) -> frozenset[str]:
    """The fields of ``cls`` marked :data:`METADATA_IN_JSON`."""
    if not (dataclasses.is_dataclass(cls) or (isinstance(cls, type) and issubclass(cls, pydantic.BaseModel))):
        return frozenset()
    return frozenset(name for name, tp in field_types(cls).items() if METADATA_IN_JSON in markers(tp))


class FlatInJSONArray(np.ndarray):
    """A view of a ``FLAT_IN_JSON`` field's array: binary codecs and shared memory see
    the array with its shape, JSON encoding (:func:`to_plain`) a flat list. The mark
    travels with the value, so every JSON path flattens it, whoever encodes."""


def _flat_in_json(value: Any) -> Any:
    return value.view(FlatInJSONArray) if isinstance(value, np.ndarray) else value


def markers(tp: Any) -> tuple[Any, ...]:
    return tp.__metadata__ if typing.get_origin(tp) is typing.Annotated else ()


# Each implementation has a name of its own: FieldSpec caches the one for its space, and a
# pickled FieldSpec refers to it by name.
@functools.singledispatch
def from_wire(space: spaces.Space, value: Any) -> Any:
    """Turn a decoded wire value into a value of ``space``."""
    return value


@from_wire.register
def _box_from_wire(space: spaces.Box, value: Any) -> np.ndarray:
    if type(value) is np.ndarray and value.dtype == space.dtype and value.shape == space.shape:
        return value  # already a value of the space's kind (an image off shared memory): as it is
    return np.asarray(value, dtype=space.dtype).reshape(space.shape)


@from_wire.register
def _discrete_from_wire(space: spaces.Discrete, value: Any) -> np.int64:
    return np.int64(value)


@from_wire.register(spaces.MultiBinary)
@from_wire.register(spaces.MultiDiscrete)
def _array_from_wire(space: spaces.Space, value: Any) -> np.ndarray:
    return np.asarray(value, dtype=space.dtype).reshape(space.shape)


@from_wire.register
def _text_from_wire(space: spaces.Text, value: Any) -> str:
    return str(value)


@from_wire.register
def _dict_from_wire(space: spaces.Dict, value: Any) -> dict[str, Any]:
    return {k: from_wire(s, value[k]) for k, s in space.spaces.items()}


@from_wire.register
def _tuple_from_wire(space: spaces.Tuple, value: Any) -> tuple:
    return tuple(from_wire(s, v) for s, v in zip(space.spaces, value))


@from_wire.register
def _sequence_from_wire(space: spaces.Sequence, value: Any) -> Any:
    items = tuple(from_wire(space.feature_space, v) for v in value)
    return np.stack(items) if space.stack and items else items


def contains(space: spaces.Space, value: Any) -> bool:
    if type(space) is spaces.Text:  # the hot path for text envs: one set operation in C
        return text_contains(space, value)
    try:
        if isinstance(space, spaces.Box) and not isinstance(value, np.ndarray):
            value = np.asarray(value, dtype=space.dtype)
        return bool(space.contains(value))
    except (TypeError, ValueError, AttributeError):
        return False


def text_contains(space: spaces.Text, value: Any) -> bool:
    """``space.contains(value)``, without a Python-level loop over the characters."""
    return (
        isinstance(value, str)
        and space.min_length <= len(value) <= space.max_length
        and space.character_set.issuperset(value)
    )


def text_contains_all(space: spaces.Text, values: list[Any]) -> bool:
    """Whether every item of ``values`` is in ``space``: :func:`text_contains` on a whole
    column, with one pass in C per check instead of a Python call per item."""
    return (
        set(map(type, values)) <= {str}
        and space.min_length <= min(map(len, values), default=space.min_length)
        and max(map(len, values), default=space.max_length) <= space.max_length
        and space.character_set.issuperset("".join(values))
    )


def describe(space: spaces.Space) -> str:
    """A short name for a space in error messages (a Text repr lists its whole charset)."""
    if isinstance(space, spaces.Text):
        return f"{type(space).__name__}(min_length={space.min_length}, max_length={space.max_length})"
    if isinstance(space, spaces.Dict):
        inner = ", ".join(f"{k}: {describe(s)}" for k, s in space.spaces.items())
        return f"Dict({inner if len(inner) <= 400 else inner[:397] + '...'})"
    if isinstance(space, spaces.Sequence):
        return f"{type(space).__name__}({describe(space.feature_space)}, stack={space.stack})"
    return short(space, 120)


def short(value: Any, limit: int = 80) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= limit else text_[: limit - 3] + "..."

