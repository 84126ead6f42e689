"""The server's per-request shortcuts give the replies of the general code.

observation_columns checks the types of a reply's values all at once (one by one
for a batch of one) and sends them as they are when they need no conversion; these tests hold it to the
definition it shortcuts, ``BatchResult.of([observation_payload(o, keep_arrays=True), ...])``,
for the values that take the shortcut and those that do not.
"""

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import pytest

from gym_openenv.models import Observation
from gym_openenv.protocol import BatchResult, decode_msgpack, encode_msgpack, observation_columns, observation_payload


@dataclass
class _Obs(Observation):
    screen: Any = None
    shape: Any = field(default_factory=list)
    count: Any = 0
    name: Any = ""


@dataclass
class _NoTruncated:  # a dataclass observation without our truncated field
    value: Any = 0
    done: bool = False
    reward: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Point:
    x: int
    y: int


class _Level(IntEnum):
    LOW = 1


def _general(observations: list[Any]) -> BatchResult:
    return BatchResult.of([None if o is None else observation_payload(o, keep_arrays=True) for o in observations])


def _frame(result: BatchResult) -> bytes:
    return encode_msgpack(result.wire())


_SCREEN = np.arange(12, dtype=np.uint8).reshape(3, 4)

CASES = {
    "plain values, arrays and lists of scalars": [_Obs(screen=_SCREEN, shape=[3, 4], count=2, name="a", reward=1.5)],
    "a failed row": [_Obs(screen=_SCREEN, shape=[3, 4], count=2, reward=1), None],
    "numpy scalars": [_Obs(count=np.int64(3), reward=np.float32(0.5), done=np.bool_(True), truncated=np.bool_(False))],
    "numpy scalars in a list": [_Obs(shape=[np.int64(1), 2]), _Obs(shape=[3, 4])],
    "a list beside scalars in one column": [_Obs(count=[1, 2]), _Obs(count=3)],
    "nested dicts and tuples": [_Obs(shape={"a": (1, np.int32(2))}, count=(1, 2))],
    "a dataclass value": [_Obs(count=_Point(1, 2))],
    "an int enum": [_Obs(count=_Level.LOW)],
    "an array subclass": [_Obs(screen=np.ma.masked_array([1, 2]))],
    "metadata": [_Obs(metadata={"step": np.int64(4), "tag": "x"}), _Obs(), None],
    "no reward": [_Obs(reward=None), _Obs(reward=2)],
    "no truncated field": [_NoTruncated(value=1, reward=0.5), None],
    "rows of two types": [_Obs(count=1), _NoTruncated(value=2)],
    "only failed rows": [None, None],
}

#: every row of every case alone (a batch of one, each gym.make step, takes a path of its own),
#: and every case twice over (so that each is also a batch of several)
MORE_CASES = {
    **{f"{name}, row {i} alone": [row] for name, rows in CASES.items() for i, row in enumerate(rows)},
    **{f"{name}, twice": rows + rows for name, rows in CASES.items()},
}


@pytest.mark.parametrize("observations", [*CASES.values(), *MORE_CASES.values()], ids=[*CASES, *MORE_CASES])
def test_observation_columns_match_the_payload_per_row(observations):
    columns = observation_columns(observations)
    expected = _general(observations)
    assert _frame(columns) == _frame(expected)
    decoded = decode_msgpack(_frame(columns))
    assert decoded["done"] == [bool(d) for d in expected.done]
    assert decoded["reward"] == expected.reward


def test_arrays_travel_as_the_environment_returned_them():
    # An environment rendering into its shared slot returns the slot itself: the reply must
    # keep that very array, or the server copies the frame onto itself.
    observations = [_Obs(screen=_SCREEN, shape=[3, 4]), None]
    columns = observation_columns(observations)
    assert columns.observation["screen"][0] is _SCREEN
    assert columns.observation["screen"][1] is None
    alone = observation_columns(observations[:1])
    assert alone.observation["screen"][0] is _SCREEN
