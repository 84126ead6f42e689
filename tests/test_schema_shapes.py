"""Every JSON-schema shape pydantic produces, as a gymnasium space: sampled actions
pass pydantic's own validation, valid observations are inside the space, values
cross the wire and back, a user's space is checked against the schema."""

import json
from enum import Enum
from typing import Any, Dict, List, Literal, Optional, Tuple

import numpy as np
import pydantic
import pytest
from gymnasium import spaces
from pydantic import BaseModel, Field

from gym_openenv.schema import EnvSchema
from gym_openenv.spaces import BoundedSequence, JSONText, ModelSpec, default_value, schema_space


class Color(str, Enum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    x: int = Field(ge=0, le=9)
    y: float = 0.0


class AllShapes(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    kind: Literal["all"] = "all"
    color: Color
    size: Literal["s", "m", 3]
    small: int = Field(ge=-2, le=5)
    big: int
    positive: int = Field(gt=0)
    ratio: float = Field(ge=0.0, lt=1.0)
    free_float: float
    flag: bool
    name: str = Field(min_length=2, max_length=6)
    maybe: Optional[int]
    either: int | str
    floats: List[float]
    triple: List[int] = Field(min_length=3, max_length=3)
    colors: List[Color] = Field(min_length=2, max_length=2)
    words: List[str] = Field(min_length=1, max_length=4)
    bits: List[bool] = Field(min_length=4, max_length=4)
    matrix: List[List[float]]
    pair: Tuple[float, float]
    names: List[str] = Field(min_length=2, max_length=2)
    mixed: Tuple[int, str]
    point: Point
    points: List[Point] = Field(max_length=2)
    counts: Dict[str, int]
    extra: Dict[str, Any]
    anything: Any
    optional_text: str = "default"


ACTION = ModelSpec.from_json_schema(AllShapes.model_json_schema(), role="action")
OBSERVATION = ModelSpec.from_json_schema(AllShapes.model_json_schema(), role="observation")

VALID = AllShapes(
    color=Color.GREEN,
    size=3,
    small=-2,
    big=2**40,
    positive=7,
    ratio=0.25,
    free_float=-3.5,
    flag=True,
    name="abc",
    maybe=None,
    either="text",
    floats=[],
    triple=[1, 2, 3],
    colors=[Color.RED, Color.GREEN],
    words=["a"],
    bits=[True, False, True, False],
    matrix=[[1.0, 2.0], [3.0]],
    pair=(0.5, -0.5),
    names=["a", "b"],
    mixed=(1, "one"),
    point=Point(x=3),
    points=[Point(x=1, y=2.0)],
    counts={"a": 1},
    extra={"nested": {"list": [1, None]}},
    anything=[1, "two"],
)


def test_each_shape_maps_to_its_documented_space():
    space = OBSERVATION.space
    assert space["color"] == spaces.Discrete(2)
    assert space["size"] == spaces.Discrete(3)
    assert space["small"] == spaces.Discrete(8, start=-2)
    assert space["big"] == spaces.Box(-(2**53), 2**53, (), np.int64)
    assert space["positive"] == spaces.Box(1, 2**53, (), np.int64)
    assert space["ratio"].low == 0.0 and space["ratio"].high < 1.0
    assert space["free_float"] == spaces.Box(-np.inf, np.inf, (), np.float64)
    assert space["flag"] == spaces.Discrete(2)
    assert (space["name"].min_length, space["name"].max_length) == (2, 6)
    assert space["maybe"] == space["big"]  # Optional[int]: the int's space, null takes the default
    assert isinstance(space["either"], JSONText)  # int | str: no one space holds both
    assert space["floats"] == spaces.Sequence(spaces.Box(-np.inf, np.inf, (), np.float64), stack=True)
    assert space["triple"] == spaces.Box(-(2**53), 2**53, (3,), np.int64)
    assert space["colors"] == spaces.MultiDiscrete([2, 2])
    assert space["words"] == BoundedSequence(space["words"].feature_space, 1, 4)
    assert space["bits"] == spaces.MultiDiscrete([2, 2, 2, 2])
    assert space["names"] == BoundedSequence(space["words"].feature_space, 2, 2)
    assert isinstance(space["mixed"], JSONText)
    assert isinstance(space["matrix"], spaces.Sequence) and isinstance(space["matrix"].feature_space, spaces.Sequence)
    assert space["pair"] == spaces.Box(-np.inf, np.inf, (2,), np.float64)
    assert set(space["point"].spaces) == {"x", "y"} and space["point"]["x"] == spaces.Discrete(10)
    assert isinstance(space["points"], BoundedSequence) and space["points"].max_length == 2
    assert isinstance(space["counts"], JSONText) and isinstance(space["extra"], JSONText)
    assert isinstance(space["anything"], JSONText)
    assert "kind" not in space.spaces  # a constant is no choice: reported, never sampled


def test_action_space_is_the_required_fields_and_constants_are_always_sent():
    assert "optional_text" not in ACTION.space.spaces and "kind" not in ACTION.space.spaces
    required = set(AllShapes.model_json_schema()["required"])
    assert set(ACTION.space.spaces) == required
    wire = ACTION.wire_fields(ACTION.space.sample())
    assert wire["kind"] == "all"


@pytest.mark.parametrize("seed", range(40))
def test_every_sampled_action_passes_pydantic_validation(seed):
    ACTION.space.seed(seed)
    wire = ACTION.wire_fields(ACTION.space.sample())
    AllShapes.model_validate(json.loads(json.dumps(wire)))  # exactly what travels


def test_valid_observations_are_inside_the_space_and_round_trip():
    wire = json.loads(VALID.model_dump_json())
    value, missing = OBSERVATION.decode(wire)
    assert OBSERVATION.space.contains(value), {k: OBSERVATION.space[k].contains(v) for k, v in value.items()}
    assert missing == ["maybe"]  # null takes the default and is named
    assert value["color"] == 1 and value["size"] == 2 and value["colors"].tolist() == [0, 1]
    assert value["bits"].tolist() == [1, 0, 1, 0] and json.loads(value["mixed"]) == [1, "one"]
    assert json.loads(value["extra"]) == {"nested": {"list": [1, None]}}
    assert value["triple"].tolist() == [1, 2, 3] and value["matrix"][1].tolist() == [3.0]
    again = {f.name: f.encode(value[f.name]) for f in OBSERVATION.space_fields if f.name != "maybe"}
    AllShapes.model_validate({**again, "maybe": None})


def test_missing_fields_take_documented_defaults():
    value, missing = OBSERVATION.decode({})
    assert set(missing) == {f.name for f in OBSERVATION.space_fields}
    assert OBSERVATION.space.contains(value)
    assert value["optional_text"] == "default"  # the schema's own default
    assert value["small"] == -2 and value["positive"] == 1 and value["free_float"] == 0.0
    assert value["name"] == "  " and value["words"] == ("",)
    again, _ = OBSERVATION.decode({})
    assert again["triple"] is not value["triple"]  # fresh values every time


@pytest.mark.parametrize(
    "schema, space",
    [
        ({"type": "integer", "minimum": 0, "maximum": 3}, spaces.Discrete(4)),
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 4}, spaces.Discrete(3, start=1)),
        ({"enum": [2, 3, 4]}, spaces.Discrete(3, start=2)),
        ({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 2}, "minItems": 2, "maxItems": 2}, spaces.MultiDiscrete([3, 3])),
        ({"type": ["number", "null"]}, spaces.Box(-np.inf, np.inf, (), np.float64)),
        ({"allOf": [{"$ref": "#/$defs/P"}]}, spaces.Dict({"x": spaces.Discrete(10), "y": spaces.Box(-np.inf, np.inf, (), np.float64)})),
    ],
)
def test_more_schema_forms(schema, space):
    defs = {"P": Point.model_json_schema()}
    assert schema_space(schema, defs=defs).space == space


def test_constants_have_no_space():
    built = schema_space({"const": "call_tool", "type": "string"})
    assert built.fixed and built.const == "call_tool" and built.encode(None) == "call_tool"
    assert schema_space({"enum": ["only"]}).const == "only"


def test_json_text_samples_are_valid_documents():
    built = schema_space({"type": "object", "additionalProperties": {"type": "integer"}, "default": {"a": 1}}, role="action")
    assert isinstance(built.space, JSONText)
    assert json.loads(built.space.sample()) == {"a": 1}
    assert built.space.contains('{"b": 2}') and not built.space.contains("{not json")
    assert built.encode('{"b": 2}') == {"b": 2}


def test_bounded_sequences_sample_within_their_bounds():
    space = BoundedSequence(spaces.Discrete(3), 1, 3, stack=True, seed=0)
    lengths = {len(space.sample()) for _ in range(200)}
    assert lengths == {1, 2, 3}
    assert not space.contains(np.zeros(4, dtype=np.int64)) and not space.contains(np.zeros(0, dtype=np.int64))
    empty = BoundedSequence(spaces.Box(0, 1, (), np.float64), 0, 1, stack=True, seed=1)
    assert all(empty.contains(empty.sample()) for _ in range(50))  # length 0 included
    assert default_value(empty).shape == (0,)


class Game(BaseModel):
    action_id: int
    game_name: str = "pong"


class Screen(BaseModel):
    screen: List[int]
    screen_shape: List[int]
    legal_actions: List[int]
    lives: int = 0


def test_user_spaces_replace_derived_ones_when_they_fit():
    action = ModelSpec.from_json_schema(Game.model_json_schema(), role="action").with_space(spaces.Discrete(6))
    assert action.space == spaces.Discrete(6)
    assert action.wire_fields(np.int64(5)) == {"action_id": 5}
    observation = ModelSpec.from_json_schema(Screen.model_json_schema()).with_space({"screen": spaces.Box(0, 255, (2, 3), np.uint8)})
    assert observation.space == spaces.Box(0, 255, (2, 3), np.uint8)  # one field: unwraps
    value, _ = observation.decode({"screen": list(range(6)), "screen_shape": [2, 3], "legal_actions": [0], "lives": 3})
    assert value.shape == (2, 3) and value[1, 2] == 5
    assert observation.info_values({"lives": 3, "legal_actions": [0]}) == {"lives": 3, "legal_actions": [0]}


@pytest.mark.parametrize(
    "model, role, space, message",
    [
        (Game, "action", spaces.Text(5), "needs a string"),
        (Game, "action", spaces.Box(0.0, 1.0, (), np.float64), "integer dtype"),
        (Game, "action", {"nope": spaces.Discrete(2)}, r"no field\(s\) \['nope'\]"),
        (Game, "action", {"game_name": spaces.Text(8)}, "must keep the required field"),
        (Point, "action", spaces.Discrete(11), r"above the schema's maximum"),
        (Screen, "observation", spaces.Box(0, 255, (4,), np.uint8), "pass a dict"),
        (Screen, "observation", {"lives": spaces.Text(3)}, "needs a string"),
    ],
)
def test_user_spaces_that_disagree_with_the_schema_are_refused_clearly(model, role, space, message):
    spec = ModelSpec.from_json_schema(model.model_json_schema(), role=role)
    with pytest.raises(ValueError, match=message):
        spec.with_space(space)


def test_a_reset_observation_schema_fills_what_a_reset_leaves_out():
    observation = {"title": "O", "type": "object", "properties": {"board": {"type": "array", "items": {"type": "integer"}}, "turn": {"type": "integer", "minimum": 0, "maximum": 1}}}
    reset_observation = {"title": "R", "type": "object", "properties": {"turn": {"type": "integer", "default": 1}}}
    schema = EnvSchema(
        ModelSpec.from_json_schema(Game.model_json_schema(), role="action"),
        ModelSpec.from_json_schema(observation),
        ModelSpec.from_json_schema(reset_observation),
    )
    obs, _, _, _, info = schema.step_tuple({"observation": {"board": [1, 0]}}, reset=True)
    assert obs["turn"] == 1 and "missing_fields" not in info
    obs, _, _, _, info = schema.step_tuple({"observation": {"board": [1, 0]}})  # a step: the space's default, named
    assert obs["turn"] == 0 and info["missing_fields"] == ["turn"]


def test_a_model_with_nothing_to_choose_is_a_one_value_space():
    class Ping(BaseModel):
        kind: Literal["ping"] = "ping"
        metadata: Dict[str, Any] = {}

    action = ModelSpec.from_json_schema(Ping.model_json_schema(), role="action")
    observation = ModelSpec.from_json_schema(Ping.model_json_schema())
    assert action.space == observation.space == spaces.Discrete(1)
    assert action.wire_fields(action.space.sample()) == {"kind": "ping"}
    assert observation.decode({"kind": "ping"})[0] == 0
