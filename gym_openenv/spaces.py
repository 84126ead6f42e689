"""Gymnasium spaces from typed models, and values between space, model and wire.

A model field becomes part of the space when its type says how:

* ``Annotated[T, <gymnasium space>]``: that space (``Box``, ``Discrete``, ...);
* ``str``: :func:`text` with the default length and character set;
* ``bool``: ``Discrete(2)``; ``float``: ``Box(-inf, inf, (), float64)``;
* a nested dataclass whose fields all map: ``Dict``.

Anything else (unbounded ints, ``Optional``, dicts, lists without a space)
is not part of the space and travels in ``info``; so does any field marked
``Annotated[T, NOT_IN_SPACE]`` (e.g. a ``str`` or ``bool`` kept for an
upstream client). ``Annotated[np.ndarray, Box(...), FLAT_IN_JSON]`` sends an
array as one flat list over OpenEnv JSON (the binary protocol keeps its
shape). An environment can refine a field's space per instance (Atari's
action count depends on the game) through ``Environment.field_spaces()``.

The declarations travel in the JSON schema under ``x-gym-space``, so a client
that only sees ``/schema`` derives the same spaces; for a foreign OpenEnv
schema, plain JSON-schema types map the same way (``integer`` needs
``minimum``/``maximum`` to become ``Discrete``).

Example:
    >>> from dataclasses import dataclass
    >>> from typing import Annotated
    >>> from gymnasium.spaces import Discrete
    >>> from gym_openenv.models import Action
    >>> @dataclass
    ... class Move(Action):
    ...     direction: Annotated[int, Discrete(4)]
    >>> ModelSpec.from_model(Move).space
    Discrete(4)
"""

import dataclasses
import functools
import string
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from gymnasium import spaces

from gym_openenv.models import RESERVED_OBSERVATION_FIELDS

__all__ = [
    "DEFAULT_CHARSET",
    "FLAT_IN_JSON",
    "NOT_IN_SPACE",
    "FieldSpec",
    "ModelSpec",
    "describe",
    "from_wire",
    "space_from_json",
    "space_to_json",
    "text",
    "text_contains",
    "to_plain",
]

#: Printable ASCII plus whitespace and the Latin-1 to box-drawing range: wide
#: enough for program output and chat, small enough for ``Text.sample``.
DEFAULT_CHARSET = "".join(sorted(set(string.printable) | {chr(c) for c in range(0xA0, 0x2600)}))
DEFAULT_TEXT_MAX_LENGTH = 65536
_SPACE_KEY = "x-gym-space"


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
    return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "dtype": space.dtype.str}


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
    kind = desc.get("type")
    if kind == "Box":
        dtype = np.dtype(desc["dtype"])
        shape = tuple(desc["shape"])
        low, high = (_bound_from_json(desc[k], shape, dtype) for k in ("low", "high"))
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(desc["n"], start=desc.get("start", 0))
    if kind == "MultiBinary":
        return spaces.MultiBinary(desc["n"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(desc["nvec"], dtype=desc.get("dtype", "int64"))
    if kind == "Text":
        charset = desc.get("charset", "default")
        return spaces.Text(
            desc["max_length"],
            min_length=desc.get("min_length", 0),
            charset=DEFAULT_CHARSET if charset == "default" else charset,
        )
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(v) for k, v in desc["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_json(v) for v in desc["spaces"]])
    if kind == "Sequence":
        return spaces.Sequence(space_from_json(desc["feature"]), stack=desc.get("stack", False))
    raise ValueError(f"unknown space description: {dict(desc)!r}")


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
    if kind is dict:
        return {str(k): to_plain(v, keep_arrays=keep_arrays) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value if keep_arrays else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, keep_arrays=keep_arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, keep_arrays=keep_arrays) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        flat = () if keep_arrays else _flat_json_fields(kind)
        return {
            name: _flat_list(getattr(value, name)) if name in flat else to_plain(getattr(value, name), keep_arrays=keep_arrays)
            for name in field_names(kind)
        }
    if isinstance(value, pydantic.BaseModel):
        return to_plain(value.model_dump(), keep_arrays=keep_arrays)
    return value


@functools.lru_cache(maxsize=None)
def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass or pydantic model, computed once per class."""
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return tuple(cls.model_fields)


@functools.lru_cache(maxsize=None)
def _flat_json_fields(cls: type) -> frozenset[str]:
    return frozenset(name for name, tp in _field_types(cls).items() if FLAT_IN_JSON in _markers(tp))


def _flat_list(value: Any) -> Any:
    return np.asarray(value).reshape(-1).tolist() if isinstance(value, np.ndarray) else to_plain(value, keep_arrays=False)


def _markers(tp: Any) -> tuple[Any, ...]:
    return tp.__metadata__ if typing.get_origin(tp) is typing.Annotated else ()


@functools.singledispatch
def from_wire(space: spaces.Space, value: Any) -> Any:
    """Turn a decoded wire value into a value of ``space``."""
    return value


@from_wire.register
def _(space: spaces.Box, value: Any) -> np.ndarray:
    return np.asarray(value, dtype=space.dtype).reshape(space.shape)


@from_wire.register
def _(space: spaces.Discrete, value: Any) -> np.int64:
    return np.int64(value)


@from_wire.register(spaces.MultiBinary)
@from_wire.register(spaces.MultiDiscrete)
def _(space: spaces.Space, value: Any) -> np.ndarray:
    return np.asarray(value, dtype=space.dtype).reshape(space.shape)


@from_wire.register
def _(space: spaces.Text, value: Any) -> str:
    return str(value)


@from_wire.register
def _(space: spaces.Dict, value: Any) -> dict[str, Any]:
    return {k: from_wire(s, value[k]) for k, s in space.spaces.items()}


@from_wire.register
def _(space: spaces.Tuple, value: Any) -> tuple:
    return tuple(from_wire(s, v) for s, v in zip(space.spaces, value))


@from_wire.register
def _(space: spaces.Sequence, value: Any) -> Any:
    items = tuple(from_wire(space.feature_space, v) for v in value)
    return np.stack(items) if space.stack and items else items


# --- models -> field specs ----------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One model field: its name, its space (None: it travels in ``info``),
    the JSON type it has on the wire, and whether the model requires it."""

    name: str
    space: spaces.Space | None
    json_type: str | None = None
    required: bool = True


def _space_for_type(tp: Any) -> spaces.Space | None:
    if typing.get_origin(tp) is typing.Annotated:
        if NOT_IN_SPACE in tp.__metadata__:
            return None
        declared = [m for m in tp.__metadata__ if isinstance(m, spaces.Space)]
        return declared[0] if declared else _space_for_type(typing.get_args(tp)[0])
    if tp is str:
        return text()
    if tp is bool:
        return spaces.Discrete(2)
    if tp is float:
        return spaces.Box(-np.inf, np.inf, shape=(), dtype=np.float64)
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, pydantic.BaseModel)):
        inner = {name: _space_for_type(sub) for name, sub in _field_types(tp).items()}
        if inner and all(s is not None for s in inner.values()):
            return spaces.Dict(inner)
    return None


def _json_type_for(tp: Any) -> str | None:
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    return {str: "string", bool: "boolean", int: "integer", float: "number"}.get(base)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    if dataclasses.is_dataclass(cls):
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return {name: hints.get(name, info.annotation) for name, info in cls.model_fields.items()}


def _field_required(cls: type, name: str) -> bool:
    if dataclasses.is_dataclass(cls):
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return cls.model_fields[name].is_required()


_EXCLUDED_FROM_SPACE = RESERVED_OBSERVATION_FIELDS  # includes "metadata"


class ModelSpec:
    """The fields of an action, observation or state model and how they map to
    a gymnasium space. Built from a model class (server side) or from a JSON
    schema (client side); both give the same space for the same model."""

    def __init__(self, title: str, fields: list[FieldSpec], model: type | None = None):
        self.title = title
        self.fields = fields
        self.model = model
        self.space_fields = [f for f in fields if f.space is not None and f.name not in _EXCLUDED_FROM_SPACE]
        self.info_fields = [f for f in fields if f not in self.space_fields and f.name not in _EXCLUDED_FROM_SPACE]
        self._by_name = {f.name: f for f in fields}
        self._space_names = frozenset(f.name for f in self.space_fields)
        self._required = [f.name for f in fields if f.required]
        self._adapters: dict[str, pydantic.TypeAdapter] = {}

    # construction

    @classmethod
    def from_model(cls, model: type, overrides: Mapping[str, spaces.Space] | None = None) -> "ModelSpec":
        """Fields of a dataclass or pydantic model; ``overrides`` replace spaces per field."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(_field_types(model))
        if unknown:
            raise ValueError(f"{model.__name__} has no field(s) {sorted(unknown)} to override")
        fields = [
            FieldSpec(
                name=name,
                space=overrides.get(name, _space_for_type(tp)),
                json_type=_json_type_for(tp),
                required=_field_required(model, name),
            )
            for name, tp in _field_types(model).items()
        ]
        return cls(model.__name__, fields, model)

    @classmethod
    def from_json_schema(cls, schema: Mapping[str, Any]) -> "ModelSpec":
        """Fields of a model described only by its JSON schema (e.g. from ``/schema``)."""
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        fields = []
        for name, prop in schema.get("properties", {}).items():
            prop = _resolve(prop, defs)
            fields.append(
                FieldSpec(name, _space_from_schema(prop, defs), prop.get("type"), name in required)
            )
        return cls(schema.get("title", "Model"), fields)

    # the space

    @functools.cached_property
    def space(self) -> spaces.Space:
        """The gymnasium space; a model with one space field unwraps to that field's space."""
        if not self.space_fields:
            raise ValueError(f"{self.title} has no field with a space; annotate one (see gym_openenv.spaces)")
        if self.unwrapped:
            return self.space_fields[0].space
        return spaces.Dict({f.name: f.space for f in self.space_fields})

    @property
    def unwrapped(self) -> bool:
        return len(self.space_fields) == 1

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the model with ``x-gym-space`` beside every space field."""
        properties: dict[str, Any] = {}
        defs: dict[str, Any] = {}
        types = _field_types(self.model) if self.model is not None else {}
        for f in self.fields:
            if f.space is not None and f.name not in _EXCLUDED_FROM_SPACE:
                flat = FLAT_IN_JSON in _markers(types.get(f.name))
                prop = dict(space_json_schema(_flattened(f.space) if flat else f.space))
                prop[_SPACE_KEY] = space_to_json(f.space)
            else:
                prop = _plain_json_schema(types.get(f.name, Any), defs)
                if f.name not in _EXCLUDED_FROM_SPACE:
                    prop[_SPACE_KEY] = None  # the client must not map it by its JSON type
            properties[f.name] = prop
        schema: dict[str, Any] = {
            "title": self.title,
            "type": "object",
            "properties": properties,
            "required": [f.name for f in self.fields if f.required],
        }
        if defs:
            schema["$defs"] = defs
        return schema

    # values

    def space_value(self, fields: Mapping[str, Any]) -> Any:
        """Wire field values -> a value of :attr:`space`."""
        if self.unwrapped:
            f = self.space_fields[0]
            return from_wire(f.space, fields[f.name])
        return {f.name: from_wire(f.space, fields[f.name]) for f in self.space_fields}

    def info_values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The fields that are not part of the space, as decoded."""
        return {f.name: fields[f.name] for f in self.info_fields if f.name in fields}

    def wire_fields(self, value: Any, *, keep_arrays: bool = False) -> dict[str, Any]:
        """A value of :attr:`space` -> wire field values, checked against the space.

        Raises:
            ValueError: naming the field whose value is outside its space.
        """
        if self.unwrapped:
            values = {self.space_fields[0].name: value}
        elif isinstance(value, Mapping):
            values = dict(value)
        else:
            raise ValueError(f"{self.title} expects a dict with keys {[f.name for f in self.space_fields]}, got {value!r}")
        missing = [f.name for f in self.space_fields if f.name not in values]
        if missing:
            raise ValueError(f"{self.title}: missing field(s) {missing}")
        wire = {}
        for f in self.space_fields:
            v = values[f.name]
            if f.json_type == "boolean" and isinstance(f.space, spaces.Discrete):
                v = bool(int(v)) if _contains(f.space, v) else v
                if isinstance(v, bool):
                    wire[f.name] = v
                    continue
            if not _contains(f.space, v):
                raise ValueError(f"{self.title}.{f.name}: {_short(v)} is not in {describe(f.space)}")
            wire[f.name] = to_plain(v, keep_arrays=keep_arrays)
        return wire

    def build(self, data: Mapping[str, Any]) -> Any:
        """Wire dict -> model instance (server side), validating every field.

        Raises:
            ValueError: naming the offending field (unknown, missing, outside its space, wrong type).
        """
        assert self.model is not None, "build() needs the model class"
        known = self._by_name
        kwargs = {}
        for name, value in data.items():
            f = known.get(name)
            if f is None:
                unknown = sorted(set(data) - set(known))
                raise ValueError(f"{self.title}: unknown field(s) {unknown}; expected {sorted(known)}")
            if name in self._space_names:
                kwargs[name] = self._checked_field(f, value)
            else:
                kwargs[name] = self._adapter(name).validate_python(value)
        if len(kwargs) < len(self._required):
            missing = [name for name in self._required if name not in kwargs]
            if missing:
                raise ValueError(f"{self.title}: missing field(s) {missing}")
        return self.model(**kwargs)

    def _checked_field(self, f: FieldSpec, value: Any) -> Any:
        bad_type = (
            (isinstance(f.space, spaces.Text) and not isinstance(value, str))
            or (isinstance(f.space, spaces.Discrete) and not isinstance(value, (int, np.integer)))
            or (f.json_type == "boolean" and not isinstance(value, (bool, np.bool_)))
        )
        if bad_type:
            raise ValueError(f"{self.title}.{f.name}: {_short(value)} has the wrong type for {describe(f.space)}")
        try:
            v = from_wire(f.space, value)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise ValueError(f"{self.title}.{f.name}: {_short(value)} does not fit {describe(f.space)}: {e}") from None
        if not _contains(f.space, v):
            raise ValueError(f"{self.title}.{f.name}: {_short(value)} is not in {describe(f.space)}")
        if f.json_type == "boolean":
            return bool(v)
        if f.json_type == "number":  # a plain `float` field gets a float, not a 0-d array
            return float(v)
        return int(v) if isinstance(f.space, spaces.Discrete) else v

    def _adapter(self, name: str) -> pydantic.TypeAdapter:
        if name not in self._adapters:
            tp = _field_types(self.model)[name]
            self._adapters[name] = pydantic.TypeAdapter(tp, config=_ARBITRARY) if _is_plain(tp) else pydantic.TypeAdapter(tp)
        return self._adapters[name]


_ARBITRARY = pydantic.ConfigDict(arbitrary_types_allowed=True)


def _is_plain(tp: Any) -> bool:
    # TypeAdapter rejects a config for dataclasses/models, which carry their own.
    return not (isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, pydantic.BaseModel)))


def _contains(space: spaces.Space, value: Any) -> bool:
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


def describe(space: spaces.Space) -> str:
    """A short name for a space in error messages (a Text repr lists its whole charset)."""
    if isinstance(space, spaces.Text):
        return f"Text(min_length={space.min_length}, max_length={space.max_length})"
    return _short(space, 120)


def _short(value: Any, limit: int = 80) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= limit else text_[: limit - 3] + "..."


def _plain_json_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    try:
        schema = (pydantic.TypeAdapter(tp, config=_ARBITRARY) if _is_plain(tp) else pydantic.TypeAdapter(tp)).json_schema()
    except pydantic.PydanticSchemaGenerationError:
        return {}  # e.g. a raw ndarray without a declared space: no schema to give
    defs.update(schema.pop("$defs", {}))
    return schema


def _resolve(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = prop.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return defs.get(ref.removeprefix("#/$defs/"), prop)
    return prop


def _flattened(space: spaces.Space) -> spaces.Space:
    return spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype) if isinstance(space, spaces.Box) else space


def _space_from_schema(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> spaces.Space | None:
    if _SPACE_KEY in prop:
        desc = prop[_SPACE_KEY]
        return None if desc is None else space_from_json(desc)
    kind = prop.get("type")
    if kind == "string":
        return text(prop.get("maxLength", DEFAULT_TEXT_MAX_LENGTH), prop.get("minLength", 0))
    if kind == "boolean":
        return spaces.Discrete(2)
    if kind == "integer" and "minimum" in prop and "maximum" in prop:
        return spaces.Discrete(prop["maximum"] - prop["minimum"] + 1, start=prop["minimum"])
    if kind == "number":
        return spaces.Box(-np.inf, np.inf, shape=(), dtype=np.float64)
    if kind == "object" and prop.get("properties"):
        inner = {k: _space_from_schema(_resolve(v, defs), defs) for k, v in prop["properties"].items()}
        if all(s is not None for s in inner.values()):
            return spaces.Dict(inner)
    return None
