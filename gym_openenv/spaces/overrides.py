"""A space chosen by the user (or a hint) in place of a derived one.

:func:`override_codec` checks that a gymnasium space fits a field's JSON
schema and returns the codec between the two: ``Discrete(n)`` for an integer
within the schema's bounds, an enum of ``n`` values or a boolean; ``Box``
for a number, an integer or an array of them (a flat list on the wire may be
given any shape of the same size, as upstream Atari's ``screen``);
``MultiDiscrete``/``MultiBinary`` for arrays of integers/booleans; ``Text``
for a string; ``Dict`` for an object (key by key); ``Sequence``/``Tuple`` for
arrays.
"""

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from gym_openenv.spaces.base import describe, from_wire, to_plain
from gym_openenv.spaces.json_schema import SchemaSpace, _resolve, _with_schema_default, default_value, schema_space

__all__ = ["override_codec"]

_NUMERIC = ("integer", "number", "boolean")


def override_codec(space: spaces.Space, schema: Mapping[str, Any], where: str) -> SchemaSpace:
    """The codec of ``space`` for values of ``schema`` (``$defs`` may sit inside it).

    Raises:
        ValueError: ``where``: the space does not fit the schema, and why.
    """
    defs = schema.get("$defs", {})
    plain = _non_null(_resolve(schema, defs), defs)
    problem = _misfit(space, plain, defs)
    if problem:
        raise ValueError(f"{where}: {describe(space)} does not fit the field's schema {_summary(plain)}: {problem}")
    return _with_schema_default(_codec(space, plain, defs), plain)


def _non_null(schema: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """``Optional[T]`` -> ``T`` (a null takes the space's default)."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        others = [_resolve(b, defs) for b in branches if b.get("type") != "null"]
        if len(others) == 1:
            return {**others[0], **({"default": schema["default"]} if "default" in schema else {})}
    if isinstance(schema.get("type"), list):
        kinds = [t for t in schema["type"] if t != "null"]
        if len(kinds) == 1:
            return {**schema, "type": kinds[0]}
    return schema


def _kind(schema: Mapping[str, Any]) -> str | None:
    if "enum" in schema:
        return "enum"
    return schema.get("type") or ("object" if "properties" in schema else None)


def _summary(schema: Mapping[str, Any]) -> str:
    keys = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems")
    return "{" + ", ".join(f"{k}: {schema[k]!r}" for k in keys if k in schema) + "}"


# --- fit ------------------------------------------------------------------------


@functools.singledispatch
def _misfit(space: spaces.Space, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    return None  # a space we know nothing about: taken as given


@_misfit.register
def _(space: spaces.Discrete, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    kind, first, last = _kind(schema), int(space.start), int(space.start + space.n - 1)
    if kind == "enum":
        values = schema["enum"]
        if all(type(v) is int for v in values):
            return None if set(range(first, last + 1)) <= set(values) else f"the values must be among {values}"
        return None if space.n == len(values) and first == 0 else f"it has {len(values)} values {values}"
    if kind == "boolean":
        return None if (first, last) == (0, 1) else "a boolean needs Discrete(2)"
    if kind != "integer":
        return f"a Discrete space needs an integer, enum or boolean, not {kind}"
    return _range_misfit(first, last, schema)


def _range_misfit(low: Any, high: Any, schema: Mapping[str, Any]) -> str | None:
    low, high = np.min(low), np.max(high)
    if "minimum" in schema and low < schema["minimum"] or "exclusiveMinimum" in schema and low <= schema["exclusiveMinimum"]:
        return f"its low {low} is below the schema's minimum"
    if "maximum" in schema and high > schema["maximum"] or "exclusiveMaximum" in schema and high >= schema["exclusiveMaximum"]:
        return f"its high {high} is above the schema's maximum"
    return None


@_misfit.register(spaces.Box)
@_misfit.register(spaces.MultiDiscrete)
@_misfit.register(spaces.MultiBinary)
def _(space: spaces.Space, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    kind = _kind(schema)
    if space.shape == ():
        if kind not in ("integer", "number"):
            return f"a scalar needs an integer or number, not {kind}"
        if kind == "integer" and not np.issubdtype(space.dtype, np.integer):
            return "an integer field needs an integer dtype"
        return _range_misfit(space.low, space.high, schema) if isinstance(space, spaces.Box) else None
    if kind != "array":
        return f"an array space needs an array, not {kind}"
    dims, leaf = _array_dims(schema, defs)
    if _kind(leaf) not in _NUMERIC:
        return f"its items are {_kind(leaf)}, not numbers"
    if _kind(leaf) == "integer" and isinstance(space, spaces.Box) and not np.issubdtype(space.dtype, np.integer):
        return "integer items need an integer dtype"
    flat = len(dims) == 1 and dims[0] in (None, int(np.prod(space.shape)))  # a flat list in any shape of its size
    fixed = all(d is None or d == s for d, s in zip(dims, space.shape))
    if not flat and not (len(dims) == len(space.shape) and fixed):
        return f"the schema's lengths {dims} do not give shape {space.shape}"
    return None


def _array_dims(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[list[int | None], Mapping[str, Any]]:
    """The fixed lengths (None: free) of nested arrays, and the innermost item schema."""
    dims: list[int | None] = []
    for _ in range(32):
        if _kind(schema) != "array":
            break
        low, high = schema.get("minItems"), schema.get("maxItems")
        dims.append(high if high is not None and low == high else None)
        schema = _non_null(_resolve(schema.get("items") or {}, defs), defs)
    return dims, schema


@_misfit.register
def _(space: spaces.Text, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    return None if _kind(schema) == "string" else f"a Text space needs a string, not {_kind(schema)}"


def _member_schemas(schema: Mapping[str, Any], names: Any) -> dict[str, Any]:
    """The schema of each named member of an object: its property, or (a str -> value
    map, ``Dict[str, List[float]]``) the schema every value has."""
    properties = schema.get("properties") or {}
    values = schema.get("additionalProperties")
    return {n: properties[n] if n in properties else values for n in names if n in properties or isinstance(values, Mapping)}


@_misfit.register
def _(space: spaces.Dict, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    members = _member_schemas(schema, space.spaces)
    unknown = sorted(set(space.spaces) - set(members))
    if unknown:
        return f"no properties {unknown}"
    for name, sub in space.spaces.items():
        problem = _misfit(sub, _non_null(_resolve(members[name], defs), defs), defs)
        if problem:
            return f"{name}: {problem}"
    return None


@_misfit.register
def _(space: spaces.Sequence, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    if _kind(schema) != "array" or not isinstance(schema.get("items"), Mapping):
        return f"a Sequence needs an array, not {_kind(schema)}"
    return _misfit(space.feature_space, _non_null(_resolve(schema["items"], defs), defs), defs)


# --- codecs ---------------------------------------------------------------------


def _codec(space: spaces.Space, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> SchemaSpace:
    kind = _kind(schema)
    if isinstance(space, spaces.Discrete) and kind in ("enum", "boolean"):
        derived = schema_space(schema, defs=defs)
        if derived.space == space:
            return derived
    if isinstance(space, spaces.Discrete) and kind == "integer":
        return SchemaSpace(space, np.int64, int, default_value(space))
    if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
        return _array_codec(space, schema, defs)
    if isinstance(space, spaces.Dict):
        return _dict_codec(space, schema, defs)
    return SchemaSpace(space, functools.partial(from_wire, space), functools.partial(to_plain, keep_arrays=False), default_value(space))


def _array_codec(space: spaces.Space, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> SchemaSpace:
    dtype, shape = space.dtype, space.shape
    dims, leaf = _array_dims(schema, defs) if _kind(schema) == "array" else ([], schema)
    flat = len(dims) == 1 and len(shape) > 1
    as_bool = _kind(leaf) == "boolean"
    as_int = _kind(leaf) == "integer"

    def decode(value: Any) -> np.ndarray:
        return np.asarray(value, dtype=dtype).reshape(shape)

    def encode(value: Any) -> Any:
        array = np.asarray(value)
        array = array.astype(bool) if as_bool else array.astype(np.int64) if as_int else array.astype(np.float64)
        return (array.reshape(-1) if flat else array).tolist()

    return SchemaSpace(space, decode, encode, default_value(space))


def _dict_codec(space: spaces.Dict, schema: Mapping[str, Any], defs: Mapping[str, Any]) -> SchemaSpace:
    properties = schema.get("properties") or {}
    schemas = _member_schemas(schema, space.spaces)
    members = {k: override_codec(s, {**schemas[k], "$defs": defs}, k) for k, s in space.spaces.items()}
    consts = {}
    for name in schema.get("required", ()):
        derived = schema_space(properties.get(name, {}), defs=defs)
        if derived.fixed:
            consts[name] = derived.const

    def decode(value: Mapping[str, Any]) -> dict[str, Any]:
        return {k: m.value(value.get(k)) for k, m in members.items()}

    def encode(value: Mapping[str, Any]) -> dict[str, Any]:
        return {**consts, **{k: m.encode(value[k]) for k, m in members.items()}}

    return SchemaSpace(space, decode, encode, {k: m.default for k, m in members.items()})
