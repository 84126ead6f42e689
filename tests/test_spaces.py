"""Spaces from models: derivation, JSON round trip, value round trip, bad input."""

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from gym_openenv.models import Action, Observation
from gym_openenv.spaces import ModelSpec, space_from_json, space_to_json, text


@dataclass
class Inner:
    x: Annotated[int, spaces.Discrete(3)]
    y: float


@dataclass
class RichObservation(Observation):
    frame: Annotated[np.ndarray, spaces.Box(0, 255, (4, 5, 3), np.uint8)]
    label: str
    flag: bool
    inner: Inner
    score: Annotated[np.ndarray, spaces.Box(-1.0, 1.0, (2,), np.float32)]
    lives: int = 0  # unbounded: info
    extra: dict[str, Any] = field(default_factory=dict)  # info


@dataclass
class MoveAction(Action):
    direction: Annotated[int, spaces.Discrete(4)]


def test_fields_map_to_spaces_and_the_rest_to_info():
    spec = ModelSpec.from_model(RichObservation)
    space = spec.space
    assert isinstance(space, spaces.Dict)
    assert set(space.spaces) == {"frame", "label", "flag", "inner", "score"}
    assert space["frame"] == spaces.Box(0, 255, (4, 5, 3), np.uint8)
    assert space["flag"] == spaces.Discrete(2)
    assert isinstance(space["inner"], spaces.Dict) and space["inner"]["x"] == spaces.Discrete(3)
    assert {f.name for f in spec.info_fields} == {"lives", "extra"}


def test_single_field_model_unwraps():
    assert ModelSpec.from_model(MoveAction).space == spaces.Discrete(4)


def test_overrides_replace_a_field_space():
    spec = ModelSpec.from_model(MoveAction, {"direction": spaces.Discrete(9)})
    assert spec.space == spaces.Discrete(9)
    with pytest.raises(ValueError, match="no field"):
        ModelSpec.from_model(MoveAction, {"nope": spaces.Discrete(2)})


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(0, 255, (2, 3), np.uint8),
        spaces.Box(-np.inf, np.inf, (), np.float64),
        spaces.Box(np.array([0.0, -1.0]), np.array([1.0, 2.0]), dtype=np.float32),
        spaces.Discrete(7, start=-2),
        spaces.MultiBinary(5),
        spaces.MultiDiscrete([3, 4]),
        spaces.MultiDiscrete([3, 4], start=[-1, 2]),
        text(100, 1),
        spaces.Text(10, charset="abc"),
        spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(0, 1, (2,))}),
        spaces.Sequence(spaces.Discrete(5)),
    ],
)
def test_space_json_round_trip(space):
    assert space_from_json(space_to_json(space)) == space


def test_schema_gives_the_client_the_same_spaces():
    for model in (RichObservation, MoveAction):
        server_side = ModelSpec.from_model(model)
        client_side = ModelSpec.from_json_schema(server_side.json_schema())
        assert client_side.space == server_side.space
        assert [f.name for f in client_side.info_fields] == [f.name for f in server_side.info_fields]


def test_foreign_openenv_schema_maps_every_field_by_its_json_shape():
    schema = {
        "title": "ChessObservation",
        "type": "object",
        "properties": {
            "board": {"type": "string"},
            "move": {"type": "integer", "minimum": 0, "maximum": 9},
            "count": {"type": "integer"},
            "done": {"type": "boolean"},
            "reward": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "metadata": {"type": "object"},
        },
    }
    spec = ModelSpec.from_json_schema(schema)
    assert isinstance(spec.space, spaces.Dict)
    assert set(spec.space.spaces) == {"board", "move", "count"}
    assert spec.space["move"] == spaces.Discrete(10)
    assert spec.space["count"] == spaces.Box(-(2**53), 2**53, (), np.int64)
    assert spec.info_fields == []


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_sampled_values_round_trip_through_the_wire(seed):
    spec = ModelSpec.from_model(RichObservation)
    client = ModelSpec.from_json_schema(spec.json_schema())
    spec.space.seed(seed)
    value = spec.space.sample()
    wire = spec.wire_fields(value)  # JSON-able dict, as sent
    decoded = client.space_value(wire)
    assert spec.space.contains(decoded)
    for name in ("frame", "score"):
        np.testing.assert_array_equal(decoded[name], value[name])
        assert decoded[name].dtype == value[name].dtype
    assert decoded["label"] == value["label"]
    assert decoded["flag"] == value["flag"]
    assert decoded["inner"]["x"] == value["inner"]["x"]


@settings(max_examples=60, deadline=None)
@given(direction=st.integers(0, 3))
def test_actions_build_models_exactly(direction):
    spec = ModelSpec.from_model(MoveAction)
    action = spec.build(spec.wire_fields(np.int64(direction)))
    assert action == MoveAction(direction=direction)
    assert type(action.direction) is int


@pytest.mark.parametrize(
    "data, message",
    [
        ({"direction": 4}, r"MoveAction.direction: 4 is not in Discrete\(4\)"),
        ({"direction": "up"}, "wrong type"),
        ({"direction": 1.5}, "wrong type"),
        ({}, r"missing field\(s\) \['direction'\]"),
        ({"direction": 1, "speed": 2}, r"unknown field\(s\) \['speed'\]"),
    ],
)
def test_bad_wire_actions_name_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec.from_model(MoveAction).build(data)


def test_values_outside_the_space_are_refused_before_sending():
    spec = ModelSpec.from_model(MoveAction)
    with pytest.raises(ValueError, match="MoveAction.direction"):
        spec.wire_fields(7)


@pytest.mark.parametrize("kind", [int, np.int64, np.int32, np.uint8])
def test_discrete_actions_of_every_integer_type_are_sent_as_python_ints_and_checked(kind):
    spec = ModelSpec.from_json_schema({"title": "Shifted", "type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}, role="action")
    spec = spec.with_space(spaces.Discrete(3, start=2))
    for value in (2, 4):
        wire = spec.wire_fields(kind(value))
        assert wire == {"k": value} and type(wire["k"]) is int
    for value in (1, 5):  # either side of Discrete(3, start=2)
        with pytest.raises(ValueError, match="Shifted.k"):
            spec.wire_fields(kind(value))
