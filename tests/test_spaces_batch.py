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

from gym_openenv.models import Action, Observation
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
    n=st.integers(1, 5),
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


@settings(max_examples=200, deadline=None)
@given(
    columns=st.lists(st.one_of(st.lists(LEGAL, max_size=5), LEGAL.flatmap(lambda legal: st.lists(st.just(legal), min_size=1, max_size=5))), min_size=1, max_size=3),
    start=st.integers(-2, 2),
)
def test_legal_masks_of_repeated_action_sets_follow_the_list_and_the_space(columns, start):
    # One spec across calls: a row remembered for one list (or one action space) is not reused for another.
    spec = ModelSpec.from_json_schema({"title": "Obs", "type": "object", "properties": {"legal_actions": {"type": "array", "items": {"type": "integer"}}}})
    for k, column in enumerate(columns * 2):
        spec.action_mask = ("legal_actions", spaces.Discrete(7, start=start + k % 2))
        try:
            expected = [spec.legal_mask({"legal_actions": legal}) for legal in column]
        except ValueError:
            continue  # ragged nested lists: covered above
        masks = spec.legal_masks(column)
        assert masks.shape == (len(column), 7) and masks.flags.owndata or masks.base is not None
        for row, mask in zip(masks, expected):
            np.testing.assert_array_equal(row, np.zeros(7, np.int8) if mask is None else mask)
        if len(masks) > 1:  # rows are not views of one remembered row
            masks[0, :] = 9
            assert not (spec.legal_masks(column)[1] == 9).any()


@settings(max_examples=200, deadline=None)
@given(sequence=st.lists(LEGAL, min_size=1, max_size=8), start=st.integers(-2, 2))
def test_legal_mask_remembers_a_repeated_action_set_without_sharing_it(sequence, start):
    # The single env's mask for one observation: a remembered row for a repeated list, never
    # for another list or another action space, and a fresh array each time.
    spec = ModelSpec.from_json_schema({"title": "Obs", "type": "object", "properties": {"legal_actions": {"type": "array", "items": {"type": "integer"}}}})
    for k, legal in enumerate(sequence * 2):
        spec.action_mask = ("legal_actions", spaces.Discrete(7, start=start + k % 2))
        try:
            expected = None if legal is None else spec._mask_of(legal)  # computed afresh, no memory
        except ValueError:
            continue  # ragged nested lists
        mask = spec.legal_mask({"legal_actions": legal})
        if expected is None:
            assert mask is None
            continue
        np.testing.assert_array_equal(mask, expected)
        mask[:] = 9  # the caller's to keep: the next call is not affected
        np.testing.assert_array_equal(spec.legal_mask({"legal_actions": legal}), expected)


def _assemble_row_by_row(spec: ModelSpec, chunks: list, env_ids: np.ndarray) -> dict:
    """What assemble must give, one row at a time (later chunks win)."""
    row_of = {int(e): r for r, e in enumerate(env_ids)}
    out: dict[str, dict[int, Any]] = {}
    for chunk in chunks:
        for i, env in enumerate(chunk.indices.tolist()):
            row = row_of[env]
            frames = chunk.observation["frame"]
            frame = frames.view[frames.positions[i]] if hasattr(frames, "view") else frames[i]
            out.setdefault("obs", {})[row] = np.asarray(frame, dtype=np.uint8)
            out.setdefault("label", {})[row] = chunk.observation["label"][i]
            out.setdefault("reward", {})[row] = 0.0 if chunk.reward[i] is None else chunk.reward[i]
            out.setdefault("terminated", {})[row] = bool(chunk.done[i]) and not chunk.truncated[i]
            out.setdefault("truncated", {})[row] = bool(chunk.truncated[i])
            for key in ("lives", "score"):
                if key in chunk.observation:
                    out.setdefault(key, {})[row] = chunk.observation[key][i]
            for key, value in (chunk.metadata[i] if chunk.metadata else {}).items():
                out.setdefault(key, {})[row] = value
            out.setdefault("action_mask", {})[row] = chunk.observation["legal_actions"][i]
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data(), num_envs=st.integers(1, 6))
def test_assemble_equals_the_row_by_row_result(data, num_envs):
    from gym_openenv.batching import assemble
    from gym_openenv.session_pool import Chunk, SlotColumn

    @dataclass
    class Frame(Observation):
        frame: Annotated[np.ndarray, spaces.Box(0, 255, (2,), np.uint8)] = None
        label: Annotated[str, spaces.Text(3, min_length=0, charset="ab")] = ""
        legal_actions: Annotated[list[int] | None, NOT_IN_SPACE] = None
        lives: Annotated[int | None, NOT_IN_SPACE] = None
        score: Annotated[float | None, NOT_IN_SPACE] = None

    spec = ModelSpec.from_json_schema(ModelSpec.from_model(Frame).json_schema(), role="observation")  # as the client sees it
    spec.action_mask = ("legal_actions", spaces.Discrete(3))
    env_ids = np.asarray(data.draw(st.one_of(st.just(list(range(num_envs))), st.permutations(range(num_envs)).flatmap(lambda p: st.lists(st.sampled_from(p), min_size=1, max_size=num_envs, unique=True)))), dtype=np.int64)
    slots = np.arange(60, dtype=np.uint8).reshape(30, 2)
    chunks = []
    for _ in range(data.draw(st.integers(1, 3))):  # overlapping chunks in any order; later ones win
        indices = np.asarray(data.draw(st.lists(st.sampled_from(env_ids.tolist()), max_size=len(env_ids), unique=True)), dtype=np.int64)
        k = len(indices)
        positions = np.asarray(data.draw(st.lists(st.integers(0, 29), min_size=k, max_size=k)), dtype=np.int64)
        frames = SlotColumn(slots, positions) if data.draw(st.booleans()) else [[int(v) for v in slots[p]] for p in positions]
        labels = data.draw(st.lists(st.one_of(st.none(), st.text("ab", max_size=3)), min_size=k, max_size=k))
        observation: dict[str, Any] = {"frame": frames, "label": labels, "legal_actions": data.draw(st.lists(st.lists(st.integers(0, 2), max_size=3), min_size=k, max_size=k))}
        if data.draw(st.booleans()):
            observation["lives"] = data.draw(st.lists(st.integers(0, 5), min_size=k, max_size=k))
        if data.draw(st.booleans()):
            observation["score"] = data.draw(st.lists(st.floats(-5, 5), min_size=k, max_size=k))
        chunks.append(Chunk(
            indices=indices,
            observation=observation,
            reward=data.draw(st.lists(st.one_of(st.none(), st.floats(-1, 1), st.integers(-1, 1)), min_size=k, max_size=k)),
            done=data.draw(st.lists(st.booleans(), min_size=k, max_size=k)),
            truncated=data.draw(st.lists(st.booleans(), min_size=k, max_size=k)),
            metadata=data.draw(st.one_of(st.none(), st.lists(st.dictionaries(st.sampled_from(["step", "seed"]), st.integers(0, 9)), min_size=k, max_size=k))),
        ))
    obs, rewards, terminated, truncated, info = assemble(spec, chunks, env_ids, num_envs)
    expected = _assemble_row_by_row(spec, chunks, env_ids)
    m = len(env_ids)
    for row in range(m):
        if row in expected.get("obs", {}):
            np.testing.assert_array_equal(obs["frame"][row], expected["obs"][row])
            label = expected["label"][row]
            assert obs["label"][row] == ("" if label is None else label)
            if label is None:  # the field's default, and flagged (an earlier chunk's None stays flagged too)
                assert info["_missing_fields"][row] and "label" in info["missing_fields"][row]
        assert rewards[row] == expected.get("reward", {}).get(row, 0.0)
        assert terminated[row] == expected.get("terminated", {}).get(row, False)
        assert truncated[row] == expected.get("truncated", {}).get(row, False)
        for key in ("lives", "score", "step", "seed"):
            rows = expected.get(key, {})
            assert (key in info) == bool(rows)
            if rows:
                assert info[f"_{key}"][row] == (row in rows)
                if row in rows:
                    assert info[key][row] == rows[row]
        legal = expected.get("action_mask", {})
        if legal:
            assert info["_action_mask"][row] == (row in legal)
            np.testing.assert_array_equal(info["action_mask"][row], spec.legal_mask({"legal_actions": legal[row]}) if row in legal else np.zeros(3, np.int8))


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(-4, 4), st.floats(-4, 4), st.booleans()), max_size=5),
    dtype=st.sampled_from([np.int8, np.int64, np.uint8, np.uint64, np.float64, None]),
)
def test_discrete_action_columns_are_checked_as_row_by_row(values, dtype):
    from gym_openenv.batching import action_columns

    @dataclass
    class Pick(Action):
        choice: Annotated[int, spaces.Discrete(5, start=-2)]

    spec = ModelSpec.from_json_schema(ModelSpec.from_model(Pick).json_schema(), role="action")  # as the client sees it
    try:
        array = np.array(values, dtype=dtype) if dtype is not None else np.array(values)
    except (OverflowError, ValueError):
        return
    space = spec.space
    bad = next((i for i, v in enumerate(array.tolist()) if not (v == int(v) and space.start <= v < space.start + space.n)), None)
    if bad is None:
        column = action_columns(spec, array, len(array))["choice"]
        assert column.dtype == space.dtype and column.tolist() == [int(v) for v in array.tolist()]
    else:
        with pytest.raises(ValueError, match=rf"^action {bad} for 'choice'"):
            action_columns(spec, array, len(array))
