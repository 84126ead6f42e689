"""ModelSpec.build_batch: whole action columns give exactly what build gives row by row
(the same models, or the same error for the first bad row), and the fast per-field
checks of build keep the slow path's results and errors."""

import dataclasses
import re
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from gym_openenv.models import Action
from gym_openenv.spaces import NOT_IN_SPACE, ModelSpec


@dataclass
class Mixed(Action):
    label: Annotated[str, spaces.Text(4, min_length=0, charset="abc")]
    count: Annotated[int, spaces.Discrete(5, start=-2)]
    flag: bool
    x: Annotated[float, spaces.Box(-1.0, 1.0, (), np.float64)]
    vec: Annotated[np.ndarray, spaces.Box(-1, 1, (2,), np.float32)]
    note: Annotated[str | None, NOT_IN_SPACE] = None


SPEC = ModelSpec.from_model(Mixed)

# Per field: (values in the space, as msgpack decodes them or as numpy scalars;
# anything, including every kind of wrong value: type, range, charset, NaN).
FIELDS = {
    "label": (st.text("abc", max_size=4), st.one_of(st.text("abcd", max_size=6), st.integers(0, 2), st.none())),
    "count": (
        st.one_of(st.integers(-2, 2), st.integers(-2, 2).map(np.int64)),
        st.one_of(st.integers(-3, 3), st.booleans(), st.floats(-3, 3), st.just("1")),
    ),
    "flag": (st.one_of(st.booleans(), st.booleans().map(np.bool_)), st.one_of(st.booleans(), st.integers(0, 1))),
    "x": (
        st.one_of(st.floats(-1, 1), st.floats(-1, 1).map(np.float64)),
        st.one_of(st.floats(-1.5, 1.5), st.floats(allow_nan=True), st.integers(-1, 1)),
    ),
    "vec": (
        st.lists(st.floats(-1, 1, width=32), min_size=2, max_size=2),
        st.lists(st.floats(-1.5, 1.5, width=32), min_size=1, max_size=3),
    ),
    "note": (st.one_of(st.none(), st.text(max_size=3)), st.integers()),
}

def outcome(call: Any) -> Any:
    try:
        return [dataclasses.astuple(m) for m in call()]
    except Exception as e:  # the same error type and message is part of the contract
        return (type(e), str(e))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], type):
        return a == b
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v) and type(u) is type(v) for u, v in zip(x, y)) for x, y in zip(a, b)
    )


def row_by_row(spec: ModelSpec, columns: dict[str, Any], n: int) -> list:
    def item(column: Any, i: int) -> Any:
        value = column[i]
        return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value

    return [spec.build({k: item(col, i) for k, col in columns.items()}) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 4),
    data=st.data(),
    as_arrays=st.booleans(),
    dropped=st.sampled_from([None, None, None, "label", "note"]),
    extra=st.sampled_from([False, False, False, True]),
    broken=st.sets(st.sampled_from(list(FIELDS)), max_size=2),
)
def test_build_batch_equals_build_on_each_row(n, data, as_arrays, dropped, extra, broken):
    def column(name: str) -> list:
        valid, wrong = FIELDS[name]
        values = st.one_of(valid, wrong) if name in broken else valid
        return data.draw(st.lists(values, min_size=n, max_size=n), label=name)

    columns: dict[str, Any] = {name: column(name) for name in FIELDS}
    if as_arrays:  # numeric columns as the binary protocol decodes them
        columns["count"] = np.array([int(c) if isinstance(c, (int, np.integer)) else 0 for c in columns["count"]])
        columns["x"] = np.array([float(x) for x in columns["x"]])
        if all(len(v) == 2 for v in columns["vec"]):
            columns["vec"] = np.array(columns["vec"], dtype=np.float32)
    if dropped:
        del columns[dropped]
    if extra:
        columns["speed"] = [1] * n
    expected = outcome(lambda: row_by_row(SPEC, columns, n))
    assert same(outcome(lambda: SPEC.build_batch(columns, n)), expected)


def test_build_batch_of_valid_columns_builds_plain_python_values():
    columns = {"label": ["ab", ""], "count": np.array([-2, 2]), "flag": [True, False], "x": [0.5, -1.0], "vec": np.zeros((2, 2), np.float32)}
    built = SPEC.build_batch(columns, 2)
    assert [(m.label, m.count, m.flag, m.x) for m in built] == [("ab", -2, True, 0.5), ("", 2, False, -1.0)]
    assert [type(m.count) for m in built] == [int, int]
    assert all(m.vec.dtype == np.float32 and m.vec.shape == (2,) for m in built)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"label": "abd"}, r"Mixed.label: 'abd' is not in Text"),
        ({"count": 3}, r"Mixed.count: 3 is not in Discrete\(5, start=-2\)"),
        ({"count": 1.0}, "wrong type"),
        ({"flag": 1}, "wrong type"),
        ({"x": float("nan")}, r"Mixed.x: nan is not in Box"),
        ({"x": 2.0}, r"Mixed.x: 2.0 is not in Box"),
    ],
)
def test_build_batch_names_the_first_bad_row(row, message):
    good = {"label": "a", "count": 0, "flag": False, "x": 0.0, "vec": [0.0, 0.0]}
    columns = {k: [v, row.get(k, v)] for k, v in good.items()}
    with pytest.raises(ValueError, match=message):
        SPEC.build_batch(columns, 2)
    with pytest.raises(ValueError, match=message):
        SPEC.build({**good, **row})


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["label", "count", "flag", "x"]), data=st.data())
def test_short_paths_of_build_give_the_checked_result(name, data):
    # build's per-field short path (plain values inside the space) against the full check it skips
    valid, wrong = FIELDS[name]
    value = data.draw(st.one_of(valid, wrong))
    field = next(f for f in SPEC.fields if f.name == name)

    def full() -> Any:
        return SPEC._checked_field(field, value)

    def short() -> Any:
        return SPEC._field_checks[name](value)

    def result(call: Any) -> Any:
        try:
            v = call()
            return type(v), v
        except ValueError as e:
            return ValueError, str(e)

    assert result(short) == result(full)


def test_an_optional_field_does_not_hide_a_missing_required_one():
    with pytest.raises(ValueError, match=r"Mixed: missing field\(s\) \['label', 'count', 'flag', 'x', 'vec'\]"):
        SPEC.build({"note": "n", "metadata": {}})
    with pytest.raises(ValueError, match=r"missing field\(s\) \['vec'\]"):
        SPEC.build_batch({"label": ["a"], "count": [0], "flag": [True], "x": [0.0], "metadata": [{}]}, 1)


LEGAL = st.one_of(
    st.none(),
    st.lists(st.integers(-3, 9)),
    st.lists(st.integers(-3, 9)).map(np.array),
    st.lists(st.lists(st.integers(0, 6), max_size=2), max_size=2),
    st.lists(st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(column=st.lists(LEGAL, max_size=5), start=st.integers(-2, 2))
def test_legal_masks_equal_one_legal_mask_per_row(column, start):
    spec = ModelSpec.from_json_schema({"title": "Obs", "type": "object", "properties": {"legal_actions": {"type": "array", "items": {"type": "integer"}}}})
    spec.action_mask = ("legal_actions", spaces.Discrete(7, start=start))
    try:
        expected = [spec.legal_mask({"legal_actions": legal}) for legal in column]
    except ValueError as e:  # ragged nested lists: the same error either way
        with pytest.raises(ValueError, match=re.escape(str(e))):
            spec.legal_masks(column)
        return
    masks = spec.legal_masks(column)
    assert masks.dtype == np.int8 and masks.shape == (len(column), 7)
    for row, mask in zip(masks, expected):
        np.testing.assert_array_equal(row, np.zeros(7, np.int8) if mask is None else mask)


METADATA = st.dictionaries(st.sampled_from(["step", "seed", "note"]), st.one_of(st.integers(), st.text(max_size=2), st.none()), max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    metadata=st.one_of(st.lists(METADATA, max_size=5), METADATA.flatmap(lambda m: st.lists(st.just(m), max_size=5))),
    extra_rows=st.integers(-2, 2),
    before=st.dictionaries(st.sampled_from(["step", "other"]), st.just([7]), max_size=2),
)
def test_metadata_columns_equal_the_row_by_row_ones(metadata, extra_rows, before):
    from gym_openenv.batching import _add_metadata

    rows = list(range(10, 10 + max(0, len(metadata) + extra_rows)))
    columns, row_lists = {k: list(v) for k, v in before.items()}, {k: [0] for k in before}
    _add_metadata(metadata, rows, columns, row_lists)
    expected, expected_rows = {k: list(v) for k, v in before.items()}, {k: [0] for k in before}
    for row, meta in zip(rows, metadata):
        for key, value in meta.items():
            expected.setdefault(key, []).append(value)
            expected_rows.setdefault(key, []).append(row)
    assert columns == expected and row_lists == expected_rows
    assert list(columns) == list(expected)  # info keys keep their order


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.text("abc", max_size=4), st.text("abcd", min_size=1, max_size=6), st.integers(0, 2)), max_size=5))
def test_text_action_columns_are_checked_as_row_by_row(values):
    from gym_openenv.batching import action_columns

    @dataclass
    class Say(Action):
        label: Annotated[str, spaces.Text(4, min_length=0, charset="abc")]

    spec = ModelSpec.from_json_schema(ModelSpec.from_model(Say).json_schema(), role="action")  # as the client sees it
    bad = next((i for i, v in enumerate(values) if not spec.space.contains(v)), None)
    if bad is None:
        assert action_columns(spec, values, len(values))["label"] == values
    else:
        with pytest.raises(ValueError, match=rf"^action {bad} for 'label'"):
            action_columns(spec, values, len(values))
