"""Batches in and out of the vector env: action columns checked against the space,
and pool :class:`~gym_openenv.session_pool.Chunk` s assembled into gymnasium's
batched ``(obs, rewards, terminated, truncated, info)``.

Array fields are filled into one freshly allocated batch array per call, each
value copied once (from the server's shared slots with one ``np.take`` per
chunk, no per-env Python work); infos follow gymnasium's ``key``/``_key`` masks.
"""

import copy
import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, iterate

from gym_openenv.session_pool import Chunk, SlotColumn
from gym_openenv.spaces import FieldSpec, ModelSpec, describe, from_wire, text_contains, text_contains_all

__all__ = ["action_columns", "assemble", "batched_space", "env_index", "flag_rows", "same_step_rows"]

Batch = tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


def batched_space(space: spaces.Space, n: int) -> spaces.Space:
    """gymnasium's ``batch_space``, without a deep copy per env of spaces it cannot stack.

    ``batch_space`` deep-copies a Text (Graph, Sequence, ...) space for each of the ``n``
    envs: with a large charset that took minutes for 1,000 envs. These share their
    (immutable) definition instead; each copy still gets its own random generator.
    """
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        return batch_space(space, n)
    if isinstance(space, spaces.Dict):
        return spaces.Dict({k: batched_space(s, n) for k, s in space.spaces.items()})
    if isinstance(space, spaces.Tuple):
        return spaces.Tuple(tuple(batched_space(s, n) for s in space.spaces))
    return spaces.Tuple(tuple(_own_rng_copy(space) for _ in range(n)))


def _own_rng_copy(space: spaces.Space) -> spaces.Space:
    twin = copy.copy(space)
    twin._np_random = None  # seeded (or drawn) on first use, independently of the others
    return twin


def assemble(observation: ModelSpec, chunks: list[Chunk], env_ids: np.ndarray | None, num_envs: int) -> Batch:
    """The rows of ``chunks``, in the order of ``env_ids`` (None: every env, in order); later
    chunks win for a row in several."""
    m = num_envs if env_ids is None else len(env_ids)
    # Rows of the output for each env index: the identity when stepping every env in order.
    row_of = None
    if env_ids is not None and (m != num_envs or not _in_order(env_ids)):
        row_of = np.full(num_envs, -1, dtype=np.int64)
        row_of[env_ids] = np.arange(m)
    fields = observation.space_fields
    buffers = {f.name: _empty(f.space, m) for f in fields}
    rewards = np.zeros(m, dtype=np.float64)
    terminated = np.zeros(m, dtype=bool)
    truncated = np.zeros(m, dtype=bool)
    info_columns: dict[str, list] = {}
    info_rows: dict[str, list[int]] = {}
    info_field_names = [f.name for f in observation.info_fields]
    missing_fields: dict[int, list[str]] = {}
    placed = []  # (chunk, its rows, and where they go) for the action masks
    end = 0  # where the chunks seen so far end, while they tile the batch: rows 0 .. m - 1 in order, each once
    for chunk in chunks:
        if not len(chunk.indices):
            continue
        rows = np.asarray(chunk.indices, dtype=np.int64) if row_of is None else row_of[chunk.indices]
        row_list = rows.tolist()
        # Where the rows go: a slice when they are consecutive and ascending (one server's block,
        # the common case), which numpy fills without a gather.
        first = row_list[0]
        if row_list == list(range(first, first + len(row_list))):
            at: slice | np.ndarray = slice(first, first + len(row_list))
            end = at.stop if end == first else -1
        else:
            at, end = rows, -1
        placed.append((chunk, rows, at))
        for f in fields:
            column = chunk.observation.get(f.name)
            decoded, missing = observation.decode_column(f, column, len(rows))  # foreign schemas, sparse rows
            if decoded is None:
                _fill(f.space, buffers[f.name], rows, at, column)
            else:
                _place(buffers[f.name], row_list, decoded)
            for position in missing:
                missing_fields.setdefault(row_list[position], []).append(f.name)
        rewards[at] = [0.0 if r is None else r for r in chunk.reward] if None in chunk.reward else chunk.reward
        truncated[at] = chunk.truncated
        terminated[at] = chunk.done
        for name in info_field_names:
            if name in chunk.observation:
                info_columns.setdefault(name, []).extend(chunk.observation[name])
                info_rows.setdefault(name, []).extend(row_list)
        if chunk.metadata:
            _add_metadata(chunk.metadata, row_list, info_columns, info_rows)
    terminated &= ~truncated  # a truncated episode is not a terminated one
    if missing_fields:
        info_rows["missing_fields"] = list(missing_fields)
        info_columns["missing_fields"] = list(missing_fields.values())
    obs = {f.name: _finish(f.space, buffers[f.name]) for f in fields}
    obs = obs[fields[0].name] if observation.unwrapped else obs if fields else np.zeros(m, dtype=np.int64)
    info = _batched_info(info_columns, info_rows, m)
    if observation.action_mask is not None:
        action_mask = _action_masks(observation, placed, end == m, m)
        if action_mask is not None:
            info = {"action_mask": action_mask[0], "_action_mask": action_mask[1], **info}
    return obs, rewards, terminated, truncated, info


def _action_masks(observation: ModelSpec, placed: list[tuple[Chunk, np.ndarray, "slice | np.ndarray"]], tiled: bool, m: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``info["action_mask"]`` (one ``(m, n)`` array, zeros where a row has no mask) and its
    ``_action_mask`` rows, from the chunks' legal-action columns; None if no chunk has one.
    ``tiled``: the chunks' rows are every row in order, each once."""
    name, space = observation.action_mask
    columns = [chunk.observation.get(name) for chunk, _, _ in placed]
    if tiled and all(c is not None and len(c) == len(rows) for c, (_, rows, _) in zip(columns, placed)):
        # Every row has its list: one column (a fixed action set, Atari's: one row, repeated).
        joined = columns[0] if len(columns) == 1 else [legal for column in columns for legal in column]
        return observation.legal_masks(joined), _all_true(m)
    masks = None
    for legal, (_, rows, at) in zip(columns, placed):
        legal = legal or ()
        if len(legal):
            if masks is None:
                masks = np.zeros((m, space.n), dtype=np.int8), np.zeros(m, dtype=bool)
            legal_at = at if len(legal) == len(rows) else rows[: len(legal)]
            masks[0][legal_at] = observation.legal_masks(legal)
            masks[1][legal_at] = True
    return masks


def _in_order(env_ids: np.ndarray) -> bool:
    """Whether ``env_ids`` is ``0, 1, ..., m - 1`` (a short list compares faster than numpy)."""
    if len(env_ids) <= 64:
        return env_ids.tolist() == list(range(len(env_ids)))
    return bool((env_ids == np.arange(len(env_ids))).all())


def env_index(env_ids: np.ndarray, num_envs: int) -> slice | np.ndarray:
    """An index for per-env arrays of length ``num_envs`` that selects ``env_ids``:
    ``slice(None)`` when they are every env in order (cheaper than indexing with an array).

    Example:
        >>> env_index(np.arange(3), 3), env_index(np.array([2, 0]), 3)
        (slice(None, None, None), array([2, 0]))
    """
    return slice(None) if len(env_ids) == num_envs and _in_order(env_ids) else env_ids


def _add_metadata(metadata: list[dict[str, Any]], rows: list[int], columns: dict[str, list], row_lists: dict[str, list[int]]) -> None:
    """Each row's metadata into the info columns: key by key where every row has the
    first row's keys and no others (as an environment's metadata usually does), else row by row."""
    metadata = metadata[: len(rows)]
    keys = list(metadata[0]) if metadata else []
    try:
        values = {key: [meta[key] for meta in metadata] for key in keys}
        same_keys = sum(map(len, metadata)) == len(keys) * len(metadata)  # each row has them all: no others
    except (KeyError, TypeError, IndexError):
        same_keys = False
    if same_keys:
        rows = rows[: len(metadata)]
        for key in keys:
            columns.setdefault(key, []).extend(values[key])
            row_lists.setdefault(key, []).extend(rows)
        return
    for row, meta in zip(rows, metadata):
        for key, value in meta.items():
            columns.setdefault(key, []).append(value)
            row_lists.setdefault(key, []).append(row)


def same_step_rows(obs: Any, info: dict[str, Any], done: np.ndarray, new_obs: Any, new_info: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """SAME_STEP autoreset: rows ``done`` take their new episode's first observation;
    the old ones go to ``info["final_obs"]`` / ``info["final_info"]``."""
    m = len(done)
    final_obs = np.empty(m, dtype=object)
    final_info = np.empty(m, dtype=object)
    rows = np.flatnonzero(done)
    for row in rows:
        final_obs[row] = _index(obs, row)
        final_info[row] = {k: v[row] for k, v in info.items() if not k.startswith("_") and info[f"_{k}"][row]}
    obs = _assign_rows(obs, rows, new_obs)
    info = _merge_info_rows(info, rows, new_info, m)
    info["final_obs"], info["_final_obs"] = final_obs, done.copy()
    info["final_info"], info["_final_info"] = final_info, done.copy()
    return obs, info


def flag_rows(info: dict[str, Any], key: str, env_ids: np.ndarray, values: dict[int, Any], dtype: Any = object) -> None:
    """``info[key]`` for the envs in ``values`` (others get the dtype's empty value), mask in ``_key``."""
    array = np.zeros(len(env_ids), dtype=dtype) if dtype is not object else np.full(len(env_ids), None, dtype=object)
    mask = np.zeros(len(env_ids), dtype=bool)
    for row, e in enumerate(env_ids.tolist()):
        if e in values:
            array[row], mask[row] = values[e], True
    info[key], info[f"_{key}"] = array, mask


# --- actions: batch -> checked columns ----------------------------------------


def action_columns(action: ModelSpec, actions: Any, n: int) -> dict[str, Any]:
    """A batch of ``n`` actions -> wire columns, checked against the space (constants added)."""
    fields = action.space_fields
    if not fields:  # a foreign action with no fields: Discrete(1), only constants are sent
        columns = {}
    elif action.unwrapped:
        columns = {fields[0].name: _wire_column(fields[0], actions, n)}
    elif not isinstance(actions, dict):
        raise ValueError(f"actions must be a dict with keys {[f.name for f in fields]}, got {type(actions).__name__}")
    else:
        missing = [f.name for f in fields if f.name not in actions]
        if missing:
            raise ValueError(f"actions missing field(s) {missing}")
        columns = {f.name: _wire_column(f, actions[f.name], n) for f in fields}
    columns.update({name: [value] * n for name, value in action.constants.items()})
    return columns


def _wire_column(field: FieldSpec, values: Any, n: int) -> Any:
    column = _check_column(field, values, n)
    if field.codec is None:
        return column
    return [field.codec.encode(v) for v in column]  # a foreign schema's wire form (enum values, JSON text)


def _check_column(field: FieldSpec, values: Any, n: int) -> Any:
    space = field.space
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        array = np.asarray(values)
        expected = (n, *space.shape)
        if array.shape != expected:
            raise ValueError(f"actions for {field.name!r} must have shape {expected}, got {array.shape}")
        if isinstance(space, spaces.Discrete):
            if array.dtype.kind in "iu" and _within(array, int(space.start), int(space.start + space.n)):
                return array.astype(space.dtype, copy=False)  # integers in range: the common case
            bad = (array < space.start) | (array >= space.start + space.n) | (array != np.floor(array))
        else:
            bad = np.array([not space.contains(np.asarray(v, dtype=space.dtype)) for v in array])
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(n, -1).any(axis=1))[0])
            raise ValueError(f"action {i} for {field.name!r}: {array[i]!r} is not in {describe(space)}")
        return array.astype(space.dtype, copy=False)
    if isinstance(space, spaces.Dict) and isinstance(values, dict):  # a batched Dict: one dict per row
        values = iterate(batch_space(space, n), values)
    values = list(values)
    if len(values) != n:
        raise ValueError(f"expected {n} actions for {field.name!r}, got {len(values)}")
    if type(space) is spaces.Text and text_contains_all(space, values):  # the common case: one check in C
        return values
    contains = functools.partial(text_contains, space) if type(space) is spaces.Text else space.contains
    for i, v in enumerate(values):
        if not contains(v):
            raise ValueError(f"action {i} for {field.name!r}: {v!r} is not in {describe(space)}")
    return values


def _within(array: np.ndarray, low: int, end: int) -> bool:
    """Whether every value of integer ``array`` is in ``[low, end)``."""
    if array.size <= 64:  # min/max of a short list: a few times cheaper than two numpy reductions
        listed = array.ravel().tolist()
        return not listed or (min(listed) >= low and max(listed) < end)
    return bool(array.min() >= low and array.max() < end)


# --- observations: columns -> batched values ----------------------------------


def _empty(space: spaces.Space, m: int) -> Any:
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        return np.empty((m, *space.shape), dtype=space.dtype)
    if isinstance(space, spaces.Dict):
        return {k: _empty(s, m) for k, s in space.spaces.items()}
    return [None] * m


def _fill(space: spaces.Space, buffer: Any, rows: np.ndarray, at: slice | np.ndarray, column: Any) -> None:
    """``column`` into ``buffer``'s ``rows`` (``at``: the same rows, as a slice where they are consecutive)."""
    if isinstance(buffer, np.ndarray):
        if isinstance(column, SlotColumn):  # one copy, from the shared slots into place
            if isinstance(at, slice):
                _take_slots(column, buffer[at])
            else:
                buffer[rows] = column.view[column.positions]
        elif isinstance(column, list) and column and isinstance(column[0], np.ndarray):
            for row, value in zip(rows.tolist(), column):  # one copy per array, straight into place
                buffer[row] = value
        else:
            buffer[at] = np.asarray(column, dtype=buffer.dtype).reshape((len(rows), *buffer.shape[1:]))
    elif isinstance(buffer, dict):
        for key, sub in buffer.items():
            _fill(space[key], sub, rows, at, [item[key] for item in column])
    elif type(space) is spaces.Text:  # strings arrive as they are
        if isinstance(at, slice) and len(column) == len(rows):
            buffer[at] = column
            return
        for row, value in zip(rows.tolist(), column):
            buffer[row] = value
    else:
        for row, value in zip(rows.tolist(), column):
            buffer[row] = from_wire(space, value)


def _take_slots(column: SlotColumn, out: np.ndarray) -> None:
    """``column``'s slots copied into ``out``.

    ``take(..., out=out)`` in its default ``mode="raise"`` first copies into a
    temporary array (numpy buffers ``out`` to keep it intact on a bad index): for
    32 Atari frames that cost ~50x the copy itself. The positions are checked
    here instead, and the take writes straight into ``out``.
    """
    positions, view = column.positions, column.view
    listed = positions.tolist()  # min/max of a short list: cheaper than two numpy reductions
    if listed and (min(listed) < 0 or max(listed) >= len(view)):
        raise IndexError(f"slot positions {listed} outside the {len(view)} slots")
    view.take(positions, axis=0, out=out, mode="clip")


def _place(buffer: Any, rows: list[int], values: list) -> None:
    """Values already decoded (foreign schemas, defaults for missing fields) into the batch buffer."""
    if isinstance(buffer, dict):
        for key, sub in buffer.items():
            _place(sub, rows, [value[key] for value in values])
        return
    for row, value in zip(rows, values):
        buffer[row] = value


def _finish(space: spaces.Space, buffer: Any) -> Any:
    """Observations are fresh arrays each call, so they are handed out as they are."""
    if isinstance(buffer, dict):
        return {k: _finish(space[k], v) for k, v in buffer.items()}
    if isinstance(buffer, list):
        return tuple(buffer)
    return buffer


def _batched_info(columns: dict[str, list], rows: dict[str, list[int]], m: int) -> dict[str, Any]:
    """Gymnasium's batched info: one array per key plus a ``_key`` mask.

    The array's dtype is that of the key's first value (bool, int64, float64, else
    object), as gymnasium's ``VectorEnv._add_info`` makes it; values that do not fit it
    (mixed types across envs) make it an object array.
    """
    info: dict[str, Any] = {}
    every_row = list(range(m))
    full_mask = _all_true(m)
    for key, values in columns.items():
        full = rows[key] == every_row  # each row once, in order (the common case): no index array
        if full:
            mask = full_mask.copy()
        else:
            idx = np.asarray(rows[key], dtype=np.int64)
            mask = np.zeros(m, dtype=bool)
            mask[idx] = True
        dtype = _info_dtype(values[0])
        array = None
        if dtype is not object:
            try:
                if full:
                    array = np.array(values, dtype=dtype)
                else:
                    array = np.zeros(m, dtype=dtype)
                    array[idx] = values
            except (TypeError, ValueError, OverflowError):  # mixed types across envs
                array = None
            if array is not None and array.shape != (m,):  # values that were not scalars after all
                array = None
        if array is None:
            # One element per value: fromiter does not look inside lists, dicts or arrays.
            if full:
                array = np.fromiter(values, dtype=object, count=m)
            else:
                array = np.empty(m, dtype=object)  # None in every row
                array[idx] = np.fromiter(values, dtype=object, count=len(values))
        info[key], info[f"_{key}"] = array, mask
    return info


def _all_true(m: int) -> np.ndarray:
    mask = np.empty(m, dtype=bool)
    mask.fill(True)  # np.ones is a Python function around this: a few times slower on small arrays
    return mask


_INFO_DTYPES: dict[type, Any] = {bool: np.bool_, np.bool_: np.bool_, int: np.int64, float: np.float64}


def _info_dtype(sample: Any) -> Any:
    dtype = _INFO_DTYPES.get(type(sample))
    if dtype is not None:
        return dtype
    if isinstance(sample, (bool, np.bool_)):
        return np.bool_
    if isinstance(sample, (int, np.integer)):
        return np.int64
    if isinstance(sample, (float, np.floating)):
        return np.float64
    return object


def _index(obs: Any, row: int) -> Any:
    if isinstance(obs, dict):
        return {k: _index(v, row) for k, v in obs.items()}
    value = obs[row]
    return value.copy() if isinstance(value, np.ndarray) else value


def _assign_rows(obs: Any, rows: np.ndarray, new: Any) -> Any:
    if isinstance(obs, dict):
        return {k: _assign_rows(v, rows, new[k]) for k, v in obs.items()}
    if isinstance(obs, tuple):
        items = list(obs)
        for j, row in enumerate(rows):
            items[row] = new[j]
        return tuple(items)
    obs[rows] = new
    return obs


def _merge_info_rows(info: dict[str, Any], rows: np.ndarray, new: dict[str, Any], m: int) -> dict[str, Any]:
    merged = dict(info)
    for key, value in new.items():
        if key.startswith("_"):
            continue
        if key not in merged:
            merged[key] = np.zeros(m, dtype=value.dtype) if value.dtype != object else np.empty(m, dtype=object)
            merged[f"_{key}"] = np.zeros(m, dtype=bool)
        merged[key][rows] = value
        merged[f"_{key}"][rows] = new[f"_{key}"]
    return merged
