"""Any JSON schema as a gymnasium space, with the codec between wire and space values.

:func:`schema_space` maps one JSON schema, as pydantic models and dataclasses
produce it (one property of a server's ``/schema``, a tool's input schema), to
a :class:`SchemaSpace`: the space, ``decode`` (wire value -> space value),
``encode`` (space value -> wire value) and the ``default`` a missing or null
value takes. The mapping:

=========================================== ===================================================
JSON schema                                 space (value on the wire)
=========================================== ===================================================
integer with minimum and maximum            ``Discrete(max - min + 1, start=min)``
integer, unbounded or bounded on one side   ``Box((), int64)``; a missing bound is JSON's exact
                                            integer range, ``±2**53``
number                                      ``Box((), float64)`` with the schema's bounds
                                            (exclusive ones moved one float inward)
boolean                                     ``Discrete(2)`` (``true``/``false``)
string                                      :func:`~gym_openenv.spaces.text`, ``minLength``/``maxLength``
enum / ``Literal`` (two or more values)     ``Discrete(n)``: index ``i`` is the ``i``-th value
const / one-value ``Literal``               no space: an action always sends the value,
                                            an observation reports it in ``info``
``Optional[T]`` (anyOf with null)           ``T``'s space; null takes the default
anyOf of several types                      actions: the first branch with a faithful space;
                                            observations: ``Box`` if all numeric, else JSON text
array with ``minItems == maxItems``,        ``Box``/``MultiDiscrete`` of that length (nested fixed
``tuple[...]`` (prefixItems)                arrays add dimensions; enums and booleans: indices),
                                            other items: a :class:`BoundedSequence` of exactly that
                                            length; a tuple of differing types: JSON text
array of free length                        ``Sequence(item, stack=True)`` for numeric items (an
                                            ndarray), else a tuple; :class:`BoundedSequence`
                                            keeps ``minItems``/``maxItems``
object with properties (a nested model)     ``Dict`` (an action: its required properties)
str -> value map, free-form object, ``Any`` :class:`JSONText`: the value as one JSON document
=========================================== ===================================================

Free-length lists are ``Sequence`` rather than a padded ``Box`` plus a length:
a schema without ``maxItems`` gives no length to pad to, and ``Sequence`` is
the value itself. Pass ``observation_space=`` to ``gym.make`` for a fixed
``Box`` where the length is known (or see :mod:`gym_openenv.hints`).

Every value sampled from an action space validates against the schema; the
exceptions are strings with a ``pattern`` or ``format`` (sampled text rarely
matches), which :attr:`SchemaSpace.exact` reports as ``False``.

Example:
    >>> s = schema_space({"enum": ["UP", "DOWN"]}, role="action")
    >>> s.space, s.encode(1), int(s.decode("UP"))
    (Discrete(2), 'DOWN', 0)
"""

import copy
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from gym_openenv.spaces.base import DEFAULT_CHARSET, DEFAULT_TEXT_MAX_LENGTH, text, text_contains, to_plain

__all__ = ["JSON_TEXT_MAX_LENGTH", "BoundedSequence", "JSONText", "SchemaSpace", "default_value", "schema_space"]

#: JSON's exactly representable integers: the bounds of an unbounded ``integer``.
JSON_INT_BOUND = 2**53
#: JSON documents (tool results, free-form objects) can be long.
JSON_TEXT_MAX_LENGTH = 1 << 20


class JSONText(spaces.Text):
    """A ``Text`` space whose values are JSON documents: the space of a value
    with no faithful gymnasium space (a free-form object, a map, ``Any``).

    ``sample()`` returns a document that validates against ``schema`` (its
    default, or the smallest value of its type), so sampled actions are accepted.
    """

    def __init__(self, schema: Mapping[str, Any] | None = None, defs: Mapping[str, Any] | None = None, max_length: int = JSON_TEXT_MAX_LENGTH, seed: Any = None):
        super().__init__(max_length, min_length=1, charset=DEFAULT_CHARSET, seed=seed)
        self.schema = dict(schema or {})
        self.example = json.dumps(_example(self.schema, defs or {}))

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        return self.example

    def contains(self, x: Any) -> bool:
        if not text_contains(self, x):
            return False
        try:
            json.loads(x)
        except ValueError:
            return False
        return True

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, JSONText) and other.schema == self.schema and other.max_length == self.max_length

    def __repr__(self) -> str:
        return f"JSONText(max_length={self.max_length})"


class BoundedSequence(spaces.Sequence):
    """A ``Sequence`` whose length stays within ``[min_length, max_length]``,
    in :meth:`sample` and :meth:`contains` (``minItems``/``maxItems``)."""

    def __init__(self, feature_space: spaces.Space, min_length: int = 0, max_length: int | None = None, stack: bool = False, seed: Any = None):
        super().__init__(feature_space, seed=seed, stack=stack)
        self.min_length = min_length
        self.max_length = max_length

    def sample(self, mask: Any = None, probability: Any = None) -> Any:
        if mask is None and probability is None:
            if self.max_length is None:
                length = self.min_length + int(self.np_random.geometric(0.25)) - 1
            else:
                length = int(self.np_random.integers(self.min_length, self.max_length + 1))
            if length == 0:  # gymnasium cannot stack an empty sample
                return default_value(self)
            mask = (length, None)
        return super().sample(mask=mask, probability=probability)

    def contains(self, x: Any) -> bool:
        try:
            length = len(x)
        except TypeError:
            return False
        upper = self.max_length if self.max_length is not None else length
        return self.min_length <= length <= upper and super().contains(x)

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, BoundedSequence)
            and super().__eq__(other)
            and (other.min_length, other.max_length) == (self.min_length, self.max_length)
        )

    def __repr__(self) -> str:
        return f"BoundedSequence({self.feature_space}, min_length={self.min_length}, max_length={self.max_length}, stack={self.stack})"


@dataclass(frozen=True)
class SchemaSpace:
    """One JSON schema as a space, and how its values cross the wire.

    Attributes:
        space: the gymnasium space; ``None`` for a constant (see ``const``).
        decode: wire (JSON) value -> value of ``space``.
        encode: value of ``space`` -> wire (JSON-able) value.
        default: the value of ``space`` a missing or null wire value takes.
        exact: ``False`` where sampled values may fail the schema (a string
            ``pattern`` or ``format``).
        const: a constant's value (``space`` is ``None``).
    """

    space: spaces.Space | None
    decode: Callable[[Any], Any] = field(repr=False)
    encode: Callable[[Any], Any] = field(repr=False)
    default: Any = field(default=None, repr=False)
    exact: bool = True
    const: Any = None

    @property
    def fixed(self) -> bool:
        """Whether this is a constant: one value, no space."""
        return self.space is None

    def value(self, wire: Any) -> Any:
        """``decode``, with ``None`` (null or missing) taking (a fresh copy of) the default."""
        return copy.deepcopy(self.default) if wire is None else self.decode(wire)


def schema_space(schema: Mapping[str, Any], *, defs: Mapping[str, Any] | None = None, role: str = "observation") -> SchemaSpace:
    """The space and codec of one JSON schema.

    Args:
        schema: a JSON schema (``$ref`` into ``defs`` is followed).
        defs: the ``$defs`` of the document ``schema`` comes from.
        role: ``"action"``: every sampled value must be valid (unions pick one
            branch; objects keep their required properties); ``"observation"``:
            every valid value must be inside the space.

    Never raises for a well-formed schema: shapes with no faithful space become :class:`JSONText`.
    """
    if role not in ("action", "observation"):
        raise ValueError(f"role must be 'action' or 'observation', got {role!r}")
    defs = dict(defs or {})
    schema = _resolve(schema, defs)
    built = _BUILDERS[_shape(schema)](schema, defs, role)
    if built.default is None and not built.fixed:
        built = dataclasses.replace(built, default=default_value(built.space))
    return _with_schema_default(built, schema)


# --- shapes -------------------------------------------------------------------


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and one-element ``allOf``, keeping sibling keys (default, description)."""
    schema = dict(schema)
    for _ in range(32):  # bounded: a self-referencing $ref stops here
        if "$ref" in schema:
            target = defs.get(str(schema.pop("$ref")).rsplit("/", 1)[-1], {})
            schema = {**target, **schema}
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            inner = schema.pop("allOf")[0]
            schema = {**inner, **schema}
        else:
            break
    return schema


def _shape(schema: Mapping[str, Any]) -> str:
    if "const" in schema or len(schema.get("enum") or ()) == 1:
        return "const"
    if "enum" in schema:
        return "enum"
    if "anyOf" in schema or "oneOf" in schema or isinstance(schema.get("type"), list):
        return "union"
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        return "object"
    if kind == "array" and "prefixItems" in schema:
        return "tuple"
    return kind if kind in _BUILDERS else "any"


def _json_text(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    space = JSONText(schema, defs)
    return SchemaSpace(space, _to_json_text, json.loads, space.example)


def _to_json_text(value: Any) -> str:
    return json.dumps(value, default=repr)


def _integer(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    low, high = _bounds(schema, integer=True)
    if low is not None and high is not None and high - low < 2**62:
        return SchemaSpace(spaces.Discrete(high - low + 1, start=low), np.int64, int, np.int64(low))
    box = spaces.Box(-JSON_INT_BOUND if low is None else low, JSON_INT_BOUND if high is None else high, (), np.int64)
    return SchemaSpace(box, functools.partial(_scalar_array, np.int64), _int)


def _number(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    low, high = _bounds(schema, integer=False)
    box = spaces.Box(-np.inf if low is None else low, np.inf if high is None else high, (), np.float64)
    return SchemaSpace(box, functools.partial(_scalar_array, np.float64), _float)


def _bounds(schema: Mapping[str, Any], integer: bool) -> tuple[Any, Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        bound = schema["exclusiveMinimum"]
        low = bound + 1 if integer else float(np.nextafter(bound, np.inf))
    if "exclusiveMaximum" in schema:
        bound = schema["exclusiveMaximum"]
        high = bound - 1 if integer else float(np.nextafter(bound, -np.inf))
    if integer:
        low = None if low is None else int(np.ceil(low))
        high = None if high is None else int(np.floor(high))
    return low, high


def _scalar_array(dtype: type, value: Any) -> np.ndarray:
    return np.asarray(value, dtype=dtype).reshape(())


def _int(value: Any) -> int:
    return int(np.asarray(value).reshape(()))


def _float(value: Any) -> float:
    return float(np.asarray(value).reshape(()))


def _boolean(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    return SchemaSpace(spaces.Discrete(2), lambda v: np.int64(bool(v)), lambda v: bool(int(v)), np.int64(0))


def _string(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    space = text(schema.get("maxLength", DEFAULT_TEXT_MAX_LENGTH), schema.get("minLength", 0))
    exact = "pattern" not in schema and "format" not in schema
    return SchemaSpace(space, str, str, " " * space.min_length, exact=exact)


def _enum(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    values = list(schema["enum"])
    if all(type(v) is int for v in values) and sorted(values) == list(range(min(values), min(values) + len(values))):
        start = min(values)  # consecutive integers: the value is the index
        return SchemaSpace(spaces.Discrete(len(values), start=start), np.int64, int, np.int64(start))
    index = {_enum_key(v): i for i, v in enumerate(values)}

    def decode(value: Any) -> np.int64:
        try:
            return np.int64(index[_enum_key(value)])
        except KeyError:
            raise ValueError(f"{value!r} is not one of {values}") from None

    return SchemaSpace(spaces.Discrete(len(values)), decode, lambda i: values[int(i)], np.int64(0))


def _enum_key(value: Any) -> Any:
    # True == 1 in Python; an enum of [1, true] has two values.
    return (type(value).__name__, json.dumps(value, sort_keys=True))


def _const(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    value = schema["const"] if "const" in schema else schema["enum"][0]
    return SchemaSpace(None, lambda v: v, lambda v: value, value, const=value)


def _union(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    if isinstance(schema.get("type"), list):
        branches = [{**schema, "type": t} for t in schema["type"]]
    else:
        branches = [_resolve(b, defs) for b in schema.get("anyOf", schema.get("oneOf", []))]
    others = [b for b in branches if b.get("type") != "null"]
    if not others:
        return _json_text(schema, defs, role)
    if len(others) == 1:
        return schema_space(others[0], defs=defs, role=role)
    if role == "action":  # any one branch's values are valid values of the union
        for branch in others:
            built = schema_space(branch, defs=defs, role=role)
            if built.exact and not built.fixed and not isinstance(built.space, JSONText):
                return built
    elif all(b.get("type") in ("integer", "number") and "enum" not in b for b in others):
        return _number({}, defs, role)
    return _json_text(schema, defs, role)


def _array(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    item_schema = schema.get("items")
    if not isinstance(item_schema, Mapping):
        return _json_text(schema, defs, role)
    item = schema_space(item_schema, defs=defs, role=role)
    if item.fixed:
        return _json_text(schema, defs, role)
    low, high = schema.get("minItems", 0), schema.get("maxItems")
    if high is not None and low == high:
        return _fixed_array([item] * high, exact=item.exact)
    return _free_array(item, low, high)


def _tuple(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    items = [schema_space(s, defs=defs, role=role) for s in schema["prefixItems"]]
    if any(i.fixed for i in items) or schema.get("items") not in (None, False):
        return _json_text(schema, defs, role)
    return _fixed_array(items, exact=all(i.exact for i in items))


def _fixed_array(items: list[SchemaSpace], exact: bool) -> SchemaSpace:
    """``len(items)`` values, one per item schema: one array space where they stack."""
    first = items[0].space if items else None
    k = len(items)
    if not items or any(i.space != first for i in items):
        return _json_text_of(items)  # tuple[int, str]: no one space holds every position
    if _plain_numeric(items[0]) and isinstance(first, (spaces.Box, spaces.MultiDiscrete, spaces.Discrete)):
        space = _stacked(first, k)
        return SchemaSpace(space, functools.partial(_array_of, space), to_list, default_value(space), exact)
    item = items[0]
    if isinstance(first, spaces.Discrete):  # enums and booleans: one index per position
        space = _stacked(first, k)

        def decode(value: Any) -> np.ndarray:
            return np.asarray([item.decode(v) for v in value], dtype=space.dtype)

        def encode(value: Any) -> list:
            return [item.encode(v) for v in value]

        return SchemaSpace(space, decode, encode, default_value(space), exact)
    return _free_array(item, k, k)  # strings, objects: a sequence of exactly k


def _json_text_of(items: list[SchemaSpace]) -> SchemaSpace:
    """A tuple of differing items as JSON text; its sample is every item's default."""
    schema = {"type": "array", "prefixItems": [{"default": to_list(i.encode(i.default))} for i in items], "minItems": len(items)}
    space = JSONText(schema)
    return SchemaSpace(space, _to_json_text, json.loads, space.example)


def _plain_numeric(item: SchemaSpace) -> bool:
    """Whether an item's wire value is its space value (ints and floats, not enums or bools)."""
    return item.decode in (np.int64,) or isinstance(item.decode, functools.partial) and item.decode.func in (_scalar_array, _array_of)


def _stacked(space: spaces.Space, k: int) -> spaces.Space:
    if isinstance(space, spaces.Discrete):
        return spaces.MultiDiscrete(np.full(k, space.n), start=np.full(k, space.start))
    if isinstance(space, spaces.MultiDiscrete):
        return spaces.MultiDiscrete(np.stack([space.nvec] * k), start=np.stack([space.start] * k))
    return spaces.Box(np.stack([space.low] * k), np.stack([space.high] * k), dtype=space.dtype)


def _array_of(space: spaces.Space, value: Any) -> np.ndarray:
    return np.asarray(value, dtype=space.dtype).reshape(space.shape)


def to_list(value: Any) -> Any:
    """An array (or tuple of arrays) as nested lists of Python numbers."""
    return to_plain(value, keep_arrays=False)


def _free_array(item: SchemaSpace, low: int, high: int | None) -> SchemaSpace:
    stack = _plain_numeric(item) and isinstance(item.space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete))
    if low or high is not None:
        space: spaces.Sequence = BoundedSequence(item.space, low, high, stack=stack)
    else:
        space = spaces.Sequence(item.space, stack=stack)
    if stack:
        dtype, shape = item.space.dtype, item.space.shape

        def decode(value: Any) -> np.ndarray:
            return np.asarray(value, dtype=dtype).reshape((len(value), *shape))

        return SchemaSpace(space, decode, to_list, default_value(space), item.exact)

    def decode_items(value: Any) -> tuple:
        return tuple(item.value(v) for v in value)

    def encode_items(value: Any) -> list:
        return [item.encode(v) for v in value]

    return SchemaSpace(space, decode_items, encode_items, default_value(space), item.exact)


def _object(schema: Mapping[str, Any], defs: Mapping[str, Any], role: str) -> SchemaSpace:
    properties = schema.get("properties") or {}
    if not properties:
        return _json_text(schema, defs, role)  # a map or a free-form object
    required = set(schema.get("required", ()))
    names = [n for n in properties if n in required] if role == "action" and required else list(properties)
    members = {name: schema_space(properties[name], defs=defs, role=role) for name in names}
    consts = {n: m.const for n, m in members.items() if m.fixed and n in required}
    members = {n: m for n, m in members.items() if not m.fixed}
    if not members:
        return _json_text(schema, defs, role)
    space = spaces.Dict({n: m.space for n, m in members.items()})

    def decode(value: Mapping[str, Any]) -> dict[str, Any]:
        return {n: m.value(value.get(n)) for n, m in members.items()}

    def encode(value: Mapping[str, Any]) -> dict[str, Any]:
        return {**consts, **{n: m.encode(value[n]) for n, m in members.items()}}

    default = {n: m.default for n, m in members.items()}
    return SchemaSpace(space, decode, encode, default, all(m.exact for m in members.values()))


_BUILDERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], str], SchemaSpace]] = {
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "string": _string,
    "enum": _enum,
    "const": _const,
    "union": _union,
    "array": _array,
    "tuple": _tuple,
    "object": _object,
    "any": _json_text,
}


def _with_schema_default(built: SchemaSpace, schema: Mapping[str, Any]) -> SchemaSpace:
    """The schema's own default, where it is a value of the space."""
    if built.fixed or schema.get("default") is None:
        return built
    try:
        value = built.decode(schema["default"])
        inside = bool(built.space.contains(value))
    except (TypeError, ValueError, KeyError, AttributeError):
        return built
    if not inside:
        return built
    return SchemaSpace(built.space, built.decode, built.encode, value, built.exact, built.const)


# --- defaults and examples ------------------------------------------------------


@functools.singledispatch
def default_value(space: spaces.Space) -> Any:
    """The value a missing field takes: zero (or the bound nearest zero), the
    first value of a ``Discrete``, the shortest text, an empty sequence."""
    raise TypeError(f"no default value for {space!r}")


@default_value.register
def _(space: spaces.Box) -> np.ndarray:
    return np.clip(np.zeros(space.shape), space.low, space.high).astype(space.dtype)


@default_value.register
def _(space: spaces.Discrete) -> np.int64:
    return np.int64(space.start)


@default_value.register
def _(space: spaces.MultiDiscrete) -> np.ndarray:
    return np.asarray(space.start, dtype=space.dtype).copy()


@default_value.register
def _(space: spaces.MultiBinary) -> np.ndarray:
    return np.zeros(space.shape, dtype=space.dtype)


@default_value.register
def _(space: spaces.Text) -> str:
    return (" " if " " in space.character_set else min(space.character_set)) * space.min_length


@default_value.register
def _(space: JSONText) -> str:
    return space.example


@default_value.register
def _(space: spaces.Dict) -> dict[str, Any]:
    return {k: default_value(s) for k, s in space.spaces.items()}


@default_value.register
def _(space: spaces.Tuple) -> tuple:
    return tuple(default_value(s) for s in space.spaces)


@default_value.register
def _(space: spaces.Sequence) -> Any:
    length = getattr(space, "min_length", 0)
    items = [default_value(space.feature_space)] * length
    if space.stack:
        feature = space.feature_space
        return np.asarray(items, dtype=feature.dtype).reshape((length, *feature.shape))
    return tuple(items)


def _example(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int = 0) -> Any:
    """The smallest JSON value that validates against ``schema`` (its default if it has one)."""
    schema = _resolve(schema, defs)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return _example(branches[0], defs, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = kind[0]
    if depth > 16:
        return None
    if kind == "object":
        properties = schema.get("properties") or {}
        return {n: _example(properties[n], defs, depth + 1) for n in schema.get("required", ()) if n in properties}
    if kind == "array":
        item = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        prefix = [_example(s, defs, depth + 1) for s in schema.get("prefixItems", ())]
        return prefix + [_example(item, defs, depth + 1)] * max(0, schema.get("minItems", 0) - len(prefix))
    if kind in ("integer", "number"):
        low, high = _bounds(schema, integer=kind == "integer")
        value = 0 if low is None or low <= 0 else low
        return value if high is None or value <= high else high
    if kind == "string":
        return " " * schema.get("minLength", 0)
    if kind == "boolean":
        return False
    return None
