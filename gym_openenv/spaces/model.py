"""Model fields as gymnasium spaces: :class:`ModelSpec` and :class:`FieldSpec`.

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
shape); ``SHORTER_ACCEPTED`` on an action array lets the server take fewer
items than the space holds (a variable-length list from an upstream client). An environment can refine a field's space per instance (Atari's
action count depends on the game) through ``Environment.field_spaces()``.

The declarations travel in the JSON schema under ``x-gym-space``, so a client
that only sees ``/schema`` derives the same spaces. A foreign OpenEnv schema
(no ``x-gym-space``) maps every field by its JSON shape
(:mod:`gym_openenv.spaces.json_schema`): an observation space holds every
field, an action space the required fields (the server fills in the
defaults of the others; a model with no required field offers all of them).

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

import copy
import dataclasses
import functools
import itertools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from gymnasium import logger as gym_logger
from gymnasium import spaces

from gym_openenv.models import RESERVED_OBSERVATION_FIELDS
from gym_openenv.spaces.base import (
    FLAT_IN_JSON,
    NOT_IN_SPACE,
    SHORTER_ACCEPTED,
    SPACE_KEY,
    contains,
    describe,
    field_types,
    from_wire,
    markers,
    short,
    space_from_json,
    space_json_schema,
    space_to_json,
    text,
    text_contains,
    text_contains_all,
    to_plain,
)
from gym_openenv.spaces.json_schema import SchemaSpace, default_value, schema_space
from gym_openenv.spaces.overrides import override_codec

__all__ = ["FieldSpec", "ModelSpec"]


# --- models -> field specs ----------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One model field: its name, its space (None: it travels in ``info``),
    the JSON type it has on the wire, and whether the model requires it.

    ``codec`` converts values of a field mapped from a foreign JSON schema
    (``None``: the space's own conversion, :func:`from_wire`); ``schema`` is
    the field's JSON schema; ``in_space`` is false for a field with a space
    that the model's space leaves out (an optional action field).
    """

    name: str
    space: spaces.Space | None
    json_type: str | None = None
    required: bool = True
    codec: SchemaSpace | None = None
    schema: Mapping[str, Any] | None = None
    in_space: bool = True

    def decode(self, wire: Any) -> Any:
        """A wire value -> a value of :attr:`space`; null takes the default."""
        if self.codec is not None:
            return self.codec.value(wire)
        return copy.deepcopy(self.default) if wire is None else self._from_wire(self.space, wire)

    def encode(self, value: Any, keep_arrays: bool = False) -> Any:
        """A value of :attr:`space` -> its wire value."""
        if self.codec is not None:
            return self.codec.encode(value)
        return to_plain(value, keep_arrays=keep_arrays)

    @functools.cached_property
    def _from_wire(self) -> Any:
        """:func:`from_wire` for this field's space, dispatched once (it decodes every step)."""
        return from_wire.dispatch(type(self.space))

    @functools.cached_property
    def default(self) -> Any:
        """The value a missing or null wire value takes (:func:`default_value`)."""
        return self.codec.default if self.codec is not None else default_value(self.space)

    @property
    def const(self) -> Any:
        """The value of a constant field (``Literal["x"]``), else ``None``."""
        return self.codec.const if self.codec is not None and self.codec.fixed else None


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
        inner = {name: _space_for_type(sub) for name, sub in field_types(tp).items()}
        if inner and all(s is not None for s in inner.values()):
            return spaces.Dict(inner)
    return None


def _json_type_for(tp: Any) -> str | None:
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    return {str: "string", bool: "boolean", int: "integer", float: "number"}.get(base)


def _field_required(cls: type, name: str) -> bool:
    if dataclasses.is_dataclass(cls):
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return cls.model_fields[name].is_required()


_EXCLUDED_FROM_SPACE = RESERVED_OBSERVATION_FIELDS  # includes "metadata"


def _required_in_space(fields: list[FieldSpec]) -> list[FieldSpec]:
    """An action's space: its required fields mapped from a foreign schema (if
    it has none, every field); the other fields keep their server defaults."""
    mapped = [f for f in fields if f.codec is not None and f.space is not None and f.name not in _EXCLUDED_FROM_SPACE]
    if not any(f.required for f in mapped):
        return fields
    return [dataclasses.replace(f, in_space=False) if f in mapped and not f.required else f for f in fields]


def _by_field(spec: "ModelSpec", space: Any) -> dict[str, spaces.Space]:
    """An override space as {field name: space}."""
    names = [f.name for f in spec.fields if f.name not in _EXCLUDED_FROM_SPACE and f.const is None]
    items = dict(space.spaces) if isinstance(space, spaces.Dict) else dict(space) if isinstance(space, Mapping) else None
    if items and set(items) <= set(names):
        by_field = items
    elif spec.unwrapped and isinstance(space, spaces.Space):
        by_field = {spec.space_fields[0].name: space}
    elif isinstance(space, spaces.Space):
        raise ValueError(
            f"{spec.title} has several fields {[f.name for f in spec.space_fields]}; "
            f"pass a dict {{field name: space}} to say which field {describe(space)} is for"
        )
    else:
        unknown = sorted(set(items or ()) - set(names))
        raise ValueError(f"{spec.title} has no field(s) {unknown}; its fields are {names}")
    for name, sub in by_field.items():
        if not isinstance(sub, spaces.Space):
            raise ValueError(f"{spec.title}.{name}: {sub!r} is not a gymnasium space")
    return by_field


class ModelSpec:
    """The fields of an action, observation or state model and how they map to
    a gymnasium space. Built from a model class (server side) or from a JSON
    schema (client side); both give the same space for the same model."""

    def __init__(self, title: str, fields: list[FieldSpec], model: type | None = None, role: str | None = None):
        self.title = title
        self.role = role
        self.fields = fields
        self.model = model
        self.space_fields = [f for f in fields if f.space is not None and f.in_space and f.name not in _EXCLUDED_FROM_SPACE]
        #: Whether the space is the one space field's own space, not a ``Dict`` of fields.
        self.unwrapped = len(self.space_fields) == 1
        self.info_fields = [f for f in fields if f not in self.space_fields and f.name not in _EXCLUDED_FROM_SPACE]
        self._info_names = tuple(f.name for f in self.info_fields)
        #: Constant fields (``Literal["x"]``): an action always sends them.
        self.constants = {f.name: f.const for f in fields if f.const is not None}
        #: (observation field listing legal action ids, the ``Discrete`` action space) for
        #: ``info["action_mask"]``; set by the client (:class:`gym_openenv.schema.EnvSchema`).
        self.action_mask: tuple[str, spaces.Discrete] | None = None
        self._last_mask: tuple[Any, list, np.ndarray] | None = None  # (action_mask, legal list, its mask row)
        self._by_name = {f.name: f for f in fields}
        self._space_names = frozenset(f.name for f in self.space_fields)
        self._required = [f.name for f in fields if f.required]
        self._adapters: dict[str, pydantic.TypeAdapter] = {}
        types = field_types(model) if model is not None else {}
        self._shorter_accepted = frozenset(name for name, tp in types.items() if SHORTER_ACCEPTED in markers(tp))

    #: Caches that hold closures (the per-field checks and short paths), which do not pickle:
    #: a spec is pickled with its env (AsyncVectorEnv's workers, SB3's SubprocVecEnv), so they
    #: are left out and built again at their first use.
    _CLOSURE_CACHES = frozenset({"_field_checks", "_wire_plain"})

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name not in self._CLOSURE_CACHES}

    # construction

    @classmethod
    def from_model(cls, model: type, overrides: Mapping[str, spaces.Space] | None = None) -> "ModelSpec":
        """Fields of a dataclass or pydantic model; ``overrides`` replace spaces per field."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(field_types(model))
        if unknown:
            raise ValueError(f"{model.__name__} has no field(s) {sorted(unknown)} to override")
        fields = [
            FieldSpec(
                name=name,
                space=overrides.get(name, _space_for_type(tp)),
                json_type=_json_type_for(tp),
                required=_field_required(model, name),
            )
            for name, tp in field_types(model).items()
        ]
        return cls(model.__name__, fields, model)

    @classmethod
    def from_json_schema(cls, schema: Mapping[str, Any], role: str = "observation") -> "ModelSpec":
        """Fields of a model described only by its JSON schema (e.g. from ``/schema``).

        ``role`` is ``"action"`` or ``"observation"`` (see :func:`schema_space`).
        Fields with ``x-gym-space`` take that space (``null``: none); the others
        map by their JSON shape.
        """
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        fields = []
        for name, prop in schema.get("properties", {}).items():
            if SPACE_KEY in prop:
                desc = prop[SPACE_KEY]
                space = None if desc is None else space_from_json(desc)
                fields.append(FieldSpec(name, space, prop.get("type"), name in required, schema=prop))
            elif name in _EXCLUDED_FROM_SPACE:
                fields.append(FieldSpec(name, None, prop.get("type"), name in required, schema=prop))
            else:
                codec = schema_space(prop, defs=defs, role=role)
                fields.append(FieldSpec(name, codec.space, prop.get("type"), name in required, codec, {**prop, "$defs": defs}))
        if role == "action":
            fields = _required_in_space(fields)
            for f in fields:
                if f.in_space and f.codec is not None and not f.codec.exact:
                    gym_logger.warn(f"{schema.get('title', 'Model')}.{f.name}: its schema has a pattern or format; sampled values may not match it")
        return cls(schema.get("title", "Model"), fields, role=role)

    def with_space(self, space: "spaces.Space | Mapping[str, spaces.Space]") -> "ModelSpec":
        """This model with ``space`` in place of the derived one (``gym.make(..., action_space=...)``).

        A ``Dict`` (or a dict) keyed by field names sets those fields' spaces,
        and only they form the space (the rest of an observation goes to
        ``info``); any other space replaces the only field of an unwrapped model.

        Raises:
            ValueError: the space does not fit the field's schema, names an
                unknown field, or leaves out a required action field.
        """
        by_field = _by_field(self, space)
        left_out = [f.name for f in self.space_fields if f.required and f.name not in by_field]
        if self.role == "action" and left_out:
            raise ValueError(f"{self.title}: the action space must keep the required field(s) {left_out}")
        fields = []
        for f in self.fields:
            if f.name not in by_field:
                fields.append(dataclasses.replace(f, in_space=False) if f in self.space_fields else f)
                continue
            new = by_field[f.name]
            codec = override_codec(new, f.schema or {}, f"{self.title}.{f.name}")
            fields.append(dataclasses.replace(f, space=new, codec=codec, in_space=True))
        return ModelSpec(self.title, fields, self.model, self.role)

    # the space

    @functools.cached_property
    def space(self) -> spaces.Space:
        """The gymnasium space; a model with one space field unwraps to that field's space."""
        if not self.space_fields:
            if self.role is not None:  # a foreign model with nothing to choose or see: one value
                return spaces.Discrete(1)
            raise ValueError(f"{self.title} has no field with a space; annotate one (see gym_openenv.spaces)")
        if self.unwrapped:
            return self.space_fields[0].space
        return spaces.Dict({f.name: f.space for f in self.space_fields})

    def json_schema(self) -> dict[str, Any]:
        """JSON schema of the model with ``x-gym-space`` beside every space field."""
        properties: dict[str, Any] = {}
        defs: dict[str, Any] = {}
        types = field_types(self.model) if self.model is not None else {}
        for f in self.fields:
            if f.space is not None and f.name not in _EXCLUDED_FROM_SPACE:
                flat = FLAT_IN_JSON in markers(types.get(f.name))
                prop = dict(space_json_schema(_flattened(f.space) if flat else f.space))
                if f.name in self._shorter_accepted:
                    prop.pop("minItems", None)
                prop[SPACE_KEY] = space_to_json(f.space)
            else:
                prop = _plain_json_schema(types.get(f.name, Any), defs)
                if f.name not in _EXCLUDED_FROM_SPACE:
                    prop[SPACE_KEY] = None  # the client must not map it by its JSON type
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
        """Wire field values -> a value of :attr:`space` (missing fields take their default)."""
        return self.decode(fields)[0]

    def decode(self, fields: Mapping[str, Any]) -> tuple[Any, list[str]]:
        """Wire field values -> (a value of :attr:`space`, the space fields that were
        missing or null and took their default)."""
        if self.unwrapped:  # the common case, without a dict of one
            f = self.space_fields[0]
            wire = fields.get(f.name)
            return f.decode(wire), [f.name] if wire is None else []
        missing = []
        values = {}
        for f in self.space_fields:
            wire = fields.get(f.name)
            if wire is None:
                missing.append(f.name)
            values[f.name] = f.decode(wire)
        if not self.space_fields:
            return np.int64(0), missing  # the one value of Discrete(1)
        return values, missing

    def decode_column(self, f: FieldSpec, column: Any, n: int) -> tuple[list | None, list[int]]:
        """A batch column of ``n`` wire values of field ``f`` -> (its decoded values, or
        ``None`` where the column can be used as it is; the positions missing or null)."""
        if column is None:
            return [f.decode(None) for _ in range(n)], list(range(n))
        if not isinstance(column, list):  # arrays (shared-memory slots) from our own servers
            return None, []
        if type(None) not in set(map(type, column)):  # no row missing (one pass in C)
            if f.codec is None:
                return None, []
            missing = []
        else:
            missing = [i for i, v in enumerate(column) if v is None]
        return [f.decode(v) for v in column], missing

    def legal_mask(self, fields: Mapping[str, Any]) -> np.ndarray | None:
        """``info["action_mask"]`` for one observation (see :attr:`action_mask`), if it lists legal actions."""
        action_mask = self.action_mask
        legal = None if action_mask is None else fields.get(action_mask[0])
        if legal is None:
            return None
        if type(legal) is not list:
            return self._mask_of(legal)
        last = self._last_mask
        try:  # the same action set as last time (a fixed one, Atari's): its remembered row, copied
            if last is not None and last[0] is action_mask and last[1] == legal:
                return last[2].copy()
        except (ValueError, TypeError):  # items that do not compare as plain values
            return self._mask_of(legal)
        mask = self._mask_of(legal)
        self._last_mask = (self.action_mask, list(legal), mask.copy())
        return mask

    def legal_masks(self, column: Sequence[Any]) -> np.ndarray:
        """:meth:`legal_mask` for a column of legal-action lists (one per observation):
        one ``int8`` row each, all zeros where a row's list is ``None``."""
        first = column[0] if len(column) else None
        try:  # every row lists the same actions (a fixed action set, Atari's): one row, repeated
            same = type(first) is list and all(type(legal) is list and legal == first for legal in column)
        except (ValueError, TypeError):  # items that do not compare as plain values
            same = False
        if same:
            last = self._last_mask
            if last is None or last[0] is not self.action_mask or last[1] != first:
                last = self._last_mask = (self.action_mask, list(first), self._legal_masks([first])[0])
            return last[2][None].repeat(len(column), axis=0)
        return self._legal_masks(column)

    def _legal_masks(self, column: Sequence[Any]) -> np.ndarray:
        space = self.action_mask[1]
        n, start = int(space.n), int(space.start)
        masks = np.zeros((len(column), n), dtype=np.int8)
        present = [i for i, legal in enumerate(column) if legal is not None]
        items = [column[i] for i in present]
        try:  # lists of one length (a fixed action set): one conversion
            ids = np.array(items, dtype=np.int64)
        except (ValueError, TypeError, OverflowError):  # ragged lists (legal moves), or odd values
            ids = None
        if ids is not None and ids.ndim == 2:
            rows = np.repeat(np.asarray(present, dtype=np.int64), ids.shape[1])
        else:
            flat = list(itertools.chain.from_iterable(items)) if set(map(type, items)) <= {list} else None
            if flat is None or not set(map(type, flat)) <= {int}:  # arrays, nested lists, other types: row by row
                return self._mask_rows(present, items, masks)
            try:
                ids = np.array(flat, dtype=np.int64)
            except OverflowError:
                return self._mask_rows(present, items, masks)
            rows = np.repeat(np.asarray(present, dtype=np.int64), np.fromiter(map(len, items), np.int64, len(items)))
        ids = ids.reshape(-1) - start
        keep = (ids >= 0) & (ids < n)
        masks[rows[keep], ids[keep]] = 1
        return masks

    def _mask_rows(self, present: list[int], items: list[Any], masks: np.ndarray) -> np.ndarray:
        for i, legal in zip(present, items):
            masks[i] = self._mask_of(legal)
        return masks

    def _mask_of(self, legal: Any) -> np.ndarray:
        space = self.action_mask[1]
        mask = np.zeros(space.n, dtype=np.int8)
        ids = np.asarray(legal, dtype=np.int64).reshape(-1) - int(space.start)
        mask[ids[(ids >= 0) & (ids < space.n)]] = 1
        return mask

    def info_values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The fields that are not part of the space, as decoded."""
        info = {}
        for name in self._info_names:  # (a loop: cheaper than a comprehension, its own call in 3.11)
            if name in fields:
                info[name] = fields[name]
        return info

    def wire_fields(self, value: Any, *, keep_arrays: bool = False) -> dict[str, Any]:
        """A value of :attr:`space` -> wire field values, checked against the space.

        Constant fields are added; an action leaves the other fields out of the
        message and the server applies their defaults.

        Raises:
            ValueError: naming the field whose value is outside its space.
        """
        if not self.space_fields:
            if not contains(self.space, value):
                raise ValueError(f"{self.title}: {short(value)} is not in {describe(self.space)}")
            return dict(self.constants)
        if self.unwrapped:  # the common case (one Discrete action), without a dict of one
            ((f, plain),) = self._wire_plain
            wire_value = _NOT_PLAIN if plain is None else plain(value)
            if wire_value is _NOT_PLAIN:
                wire_value = self._checked_wire_value(f, value, keep_arrays)
            return {**self.constants, f.name: wire_value}
        if not isinstance(value, Mapping):
            raise ValueError(f"{self.title} expects a dict with keys {[f.name for f in self.space_fields]}, got {value!r}")
        values = dict(value)
        missing = [f.name for f in self.space_fields if f.name not in values]
        if missing:
            raise ValueError(f"{self.title}: missing field(s) {missing}")
        wire = dict(self.constants)
        for f, plain in self._wire_plain:
            v = values[f.name]
            wire_value = _NOT_PLAIN if plain is None else plain(v)
            wire[f.name] = self._checked_wire_value(f, v, keep_arrays) if wire_value is _NOT_PLAIN else wire_value
        return wire

    def _checked_wire_value(self, f: FieldSpec, v: Any, keep_arrays: bool) -> Any:
        """The wire value of space field ``f``'s value ``v``, where its short path
        (:attr:`_wire_plain`: an int in its Discrete, a str in its Text...) did not take it.

        Raises:
            ValueError: ``v`` is outside the field's space.
        """
        if f.codec is None and f.json_type == "boolean" and isinstance(f.space, spaces.Discrete):
            v = bool(int(v)) if contains(f.space, v) else v
            if isinstance(v, bool):
                return v
        if not contains(f.space, v):
            raise ValueError(f"{self.title}.{f.name}: {short(v)} is not in {describe(f.space)}")
        return f.encode(v, keep_arrays)

    def build(self, data: Mapping[str, Any]) -> Any:
        """Wire dict -> model instance (server side), validating every field.

        Raises:
            ValueError: naming the offending field (unknown, missing, outside its space, wrong type).
        """
        assert self.model is not None, "build() needs the model class"
        checks = self._field_checks
        kwargs = {}
        for name, value in data.items():
            check = checks.get(name)
            if check is None:
                unknown = sorted(set(data) - set(checks))
                raise ValueError(f"{self.title}: unknown field(s) {unknown}; expected {sorted(checks)}")
            kwargs[name] = check(value)
        if not self._required_names.issubset(kwargs):  # (an optional field does not stand in for a required one)
            missing = [name for name in self._required if name not in kwargs]
            raise ValueError(f"{self.title}: missing field(s) {missing}")
        return self.model(**kwargs)

    def build_batch(self, columns: Mapping[str, Any], n: int) -> list[Any]:
        """``n`` wire rows given column by column -> ``n`` model instances (server side).

        The same models, and the same error, as :meth:`build` on each row
        ``{name: columns[name][i]}`` (a 0-d numpy item taken as its Python value),
        with the checks run on whole columns where a field's space allows it.

        Example:
            >>> from gym_openenv.servers.atari.models import AtariAction
            >>> actions = ModelSpec.from_model(AtariAction).build_batch({"action_id": np.array([3, 0])}, 2)
            >>> [(type(a).__name__, a.action_id) for a in actions]
            [('AtariAction', 3), ('AtariAction', 0)]

        Raises:
            ValueError: as :meth:`build`, for the first row that fails.
        """
        assert self.model is not None, "build_batch() needs the model class"
        if n == 0:
            return []
        if n == 1:  # a batch of one (every gym.make step): its row, built as build() does; column checks cost more
            return [self.build({name: _row_item(column, 0) for name, column in columns.items()})]
        names = list(columns)
        try:
            checked = [self._checked_column(name, columns[name], n) for name in names]
        except Exception:  # build on each row raises the error of the first bad row
            checked = None
        if checked is None or any(c is None for c in checked) or not self._required_names.issubset(names):
            return [self.build({k: _row_item(col, i) for k, col in columns.items()}) for i in range(n)]
        model = self.model
        if len(names) == 1:
            name = names[0]
            return [model(**{name: v}) for v in checked[0]]
        return [model(**dict(zip(names, row))) for row in zip(*checked)]

    def _checked_column(self, name: str, column: Any, n: int) -> list | None:
        """Column ``name`` checked and converted as :meth:`build` would each of its
        ``n`` items; ``None`` where build must run row by row (unknown field, odd column)."""
        check = self._field_checks.get(name)
        if check is None or len(column) != n:
            return None
        if isinstance(column, np.ndarray):
            if column.dtype == object:
                return None
            values = column.tolist() if column.ndim == 1 else list(column)  # Python scalars or row arrays
        else:
            values = list(column)
        kinds = set(map(type, values))
        if not kinds <= _WIRE_TYPES:  # numpy scalars in a list: as build's caller passes them
            values = [_row_item(values, i) for i in range(n)]
            kinds = set(map(type, values))
        whole = _COLUMN_CHECKS.get(self._fast_kind.get(name))
        if whole is not None and whole(self._by_name[name].space, values, kinds):
            return values
        return [check(v) for v in values]

    @functools.cached_property
    def _field_checks(self) -> dict[str, Any]:
        """Field name -> (wire value -> the value the model gets, checked), one per field.

        Plain ``str``, ``int``, ``bool`` and ``float`` values inside their space take a
        short path with the result :meth:`_checked_field` would give; everything else
        (and every error) goes through it.
        """
        checks = {}
        for f in self.fields:
            if f.name not in self._space_names:
                checks[f.name] = functools.partial(self._validated, f.name)
                continue
            slow = functools.partial(self._checked_field, f)
            kind = self._fast_kind.get(f.name)
            space = f.space
            if kind == "text":
                checks[f.name] = lambda v, space=space, slow=slow: v if type(v) is str and text_contains(space, v) else slow(v)
            elif kind in ("int", "bool"):
                lo, hi = int(space.start), int(space.start) + int(space.n)
                plain = int if kind == "int" else bool
                checks[f.name] = lambda v, lo=lo, hi=hi, plain=plain, slow=slow: v if type(v) is plain and lo <= v < hi else slow(v)
            elif kind == "float":
                lo, hi = float(space.low), float(space.high)
                checks[f.name] = lambda v, lo=lo, hi=hi, slow=slow: v if type(v) is float and lo <= v <= hi else slow(v)
            else:
                checks[f.name] = slow
        return checks

    @functools.cached_property
    def _fast_kind(self) -> dict[str, str]:
        """Space fields whose plain wire values need no conversion: name -> their kind."""
        kinds = {}
        for f in self.space_fields:
            space, json_type = f.space, f.json_type
            if type(space) is spaces.Text and json_type not in ("boolean", "number"):
                kinds[f.name] = "text"
            elif type(space) is spaces.Discrete and json_type in (None, "integer"):
                kinds[f.name] = "int"
            elif type(space) is spaces.Discrete and json_type == "boolean":
                kinds[f.name] = "bool"
            elif (
                type(space) is spaces.Box and space.shape == () and space.dtype == np.float64
                and json_type == "number" and f.name not in self._shorter_accepted
            ):
                kinds[f.name] = "float"
        return kinds

    @functools.cached_property
    def _wire_plain(self) -> list[tuple[FieldSpec, Any]]:
        """(space field, its short path or None) for :meth:`wire_fields`: the short path
        returns the wire value of a plain value inside the space (a Python or numpy int
        in a ``Discrete``, as ``action_space.sample()`` gives), else ``_NOT_PLAIN``."""
        paths = []
        for f in self.space_fields:
            kind, space, path = self._fast_kind.get(f.name), f.space, None
            if kind == "int" and f.codec is None:
                lo, hi = int(space.start), int(space.start) + int(space.n)

                def path(v: Any, lo: int = lo, hi: int = hi) -> Any:
                    if type(v) in _INT_TYPES:
                        v = int(v)
                        if lo <= v < hi:
                            return v
                    return _NOT_PLAIN
            elif kind == "text" and f.codec is None:
                path = lambda v, space=space: v if type(v) is str and text_contains(space, v) else _NOT_PLAIN  # noqa: E731
            paths.append((f, path))
        return paths

    @functools.cached_property
    def _required_names(self) -> frozenset[str]:
        return frozenset(self._required)

    def _validated(self, name: str, value: Any) -> Any:
        return self._adapter(name).validate_python(value)

    def _checked_field(self, f: FieldSpec, value: Any) -> Any:
        bad_type = (
            (isinstance(f.space, spaces.Text) and not isinstance(value, str))
            or (isinstance(f.space, spaces.Discrete) and not isinstance(value, (int, np.integer)))
            or (f.json_type == "boolean" and not isinstance(value, (bool, np.bool_)))
        )
        if bad_type:
            raise ValueError(f"{self.title}.{f.name}: {short(value)} has the wrong type for {describe(f.space)}")
        space = _prefix_space(f.space, value) if f.name in self._shorter_accepted else f.space
        try:
            v = from_wire(space, value)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise ValueError(f"{self.title}.{f.name}: {short(value)} does not fit {describe(f.space)}: {e}") from None
        if not contains(space, v):
            raise ValueError(f"{self.title}.{f.name}: {short(value)} is not in {describe(f.space)}")
        if f.json_type == "boolean":
            return bool(v)
        if f.json_type == "number":  # a plain `float` field gets a float, not a 0-d array
            return float(v)
        return int(v) if isinstance(f.space, spaces.Discrete) else v

    def _adapter(self, name: str) -> pydantic.TypeAdapter:
        if name not in self._adapters:
            tp = field_types(self.model)[name]
            self._adapters[name] = pydantic.TypeAdapter(tp, config=_ARBITRARY) if _is_plain(tp) else pydantic.TypeAdapter(tp)
        return self._adapters[name]


_ARBITRARY = pydantic.ConfigDict(arbitrary_types_allowed=True)

#: Types msgpack and JSON decode to: a column of these needs no numpy-scalar conversion.
_WIRE_TYPES = frozenset({str, int, float, bool, type(None), list, dict, bytes})


def _row_item(column: Any, i: int) -> Any:
    """Item ``i`` of a wire column, a 0-d numpy value as its Python value."""
    value = column[i]
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _text_column(space: spaces.Text, values: list, kinds: set) -> bool:
    return text_contains_all(space, values)


def _discrete_column(plain: type) -> Any:
    def check(space: spaces.Discrete, values: list, kinds: set) -> bool:
        start = int(space.start)
        return kinds == {plain} and start <= min(values) and max(values) < start + int(space.n)

    return check


def _float_column(space: spaces.Box, values: list, kinds: set) -> bool:
    array = np.asarray(values, dtype=np.float64)  # a NaN fails both bounds
    return kinds == {float} and bool((array >= space.low).all() and (array <= space.high).all())


#: What a short path of :attr:`ModelSpec._wire_plain` returns for a value it leaves to the checks.
_NOT_PLAIN = object()
#: Integers a ``Discrete`` field takes as they are (``bool`` is not one: it is an int, not a count).
_INT_TYPES = frozenset({int, np.int64, np.int32, np.int16, np.int8, np.uint64, np.uint32, np.uint16, np.uint8})


#: Whole-column checks by :attr:`ModelSpec._fast_kind` (true: every value is in the space as it is).
_COLUMN_CHECKS = {"text": _text_column, "int": _discrete_column(int), "bool": _discrete_column(bool), "float": _float_column}


def _is_plain(tp: Any) -> bool:
    # TypeAdapter rejects a config for dataclasses/models, which carry their own.
    return not (isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, pydantic.BaseModel)))


def _plain_json_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    try:
        schema = (pydantic.TypeAdapter(tp, config=_ARBITRARY) if _is_plain(tp) else pydantic.TypeAdapter(tp)).json_schema()
    except pydantic.PydanticSchemaGenerationError:
        return {}  # e.g. a raw ndarray without a declared space: no schema to give
    defs.update(schema.pop("$defs", {}))
    return schema


def _prefix_space(space: spaces.Space, value: Any) -> spaces.Space:
    """The part of a ``SHORTER_ACCEPTED`` array's space that a shorter ``value`` fills."""
    n = len(value) if isinstance(value, (list, tuple)) or np.ndim(value) > 0 else None
    if not isinstance(space, spaces.Box) or not space.shape or n is None or n >= space.shape[0]:
        return space
    return spaces.Box(space.low[:n], space.high[:n], dtype=space.dtype)


def _flattened(space: spaces.Space) -> spaces.Space:
    return spaces.Box(space.low.reshape(-1), space.high.reshape(-1), dtype=space.dtype) if isinstance(space, spaces.Box) else space
