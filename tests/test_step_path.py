"""The client's per-step path (single_payload -> EnvSchema.step_tuple, wire_fields) keeps its
behaviour on its short paths: arrays copied once and owned by the caller, missing fields
reported, wire values checked against the space."""

import concurrent.futures
import pickle
import sys
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pytest
from gymnasium import spaces

from gym_openenv.client import single_payload
from gym_openenv.errors import ServerError
from gym_openenv.models import Action, Observation
from gym_openenv import protocol
from gym_openenv.protocol import BatchResult, RowError, decode_batch_reply, decode_msgpack, encode_msgpack
from gym_openenv.schema import EnvSchema
from gym_openenv.shm import ObservationSlots
from gym_openenv.spaces import ModelSpec

SHAPE = (4, 5, 3)


@dataclass
class Screen(Observation):
    screen: Annotated[np.ndarray, spaces.Box(0, 255, SHAPE, np.uint8)]
    lives: int = 0


@dataclass
class Press(Action):
    button: Annotated[int, spaces.Discrete(3)]


def _schema() -> EnvSchema:
    # As the client derives it: from the server's JSON schema.
    action = ModelSpec.from_json_schema(ModelSpec.from_model(Press).json_schema(), role="action")
    observation = ModelSpec.from_json_schema(ModelSpec.from_model(Screen).json_schema(), role="observation")
    return EnvSchema(action, observation)


def test_step_tuple_of_a_shared_memory_screen_is_a_copy_the_caller_owns():
    server = ObservationSlots.create({"screen": ("|u1", SHAPE)}, count=1)
    client = ObservationSlots.open(server.describe())
    try:
        frame = np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)
        server.write("screen", 0, frame)
        small = np.frombuffer(bytes(range(6)), dtype=np.uint8)  # an array in the frame: read-only bytes
        reply = BatchResult(observation={"screen": [None], "lives": [3], "extra": [small]}, reward=[1], done=[True], truncated=[False], shm=["screen"])
        payload = single_payload(reply, client)
        obs, reward, terminated, truncated, info = _schema().step_tuple(payload)
        server.write("screen", 0, np.zeros(SHAPE, np.uint8))  # the next step rewrites the slot
        assert obs.dtype == np.uint8 and obs.shape == SHAPE and (obs == frame).all()
        assert obs.flags.writeable and obs.flags.owndata
        assert (reward, terminated, truncated) == (1.0, True, False) and type(reward) is float
        assert info["lives"] == 3 and "missing_fields" not in info
        extra = payload["observation"]["extra"]
        assert extra.flags.writeable and (extra == small).all()
    finally:
        client.close()
        server.close()


def test_step_tuple_converts_a_listed_screen_and_fills_a_missing_one():
    schema = _schema()
    listed = np.ones(SHAPE, np.int64).tolist()
    obs, *_, info = schema.step_tuple({"observation": {"screen": listed, "lives": 2}, "reward": None})
    assert obs.dtype == np.uint8 and obs.shape == SHAPE and (obs == 1).all()
    wrong_dtype = np.full(SHAPE, 7, np.int64)
    obs, *_ = schema.step_tuple({"observation": {"screen": wrong_dtype}})
    assert obs.dtype == np.uint8 and (obs == 7).all()
    obs, reward, *_, info = schema.step_tuple({"observation": {"lives": 2}})
    assert obs.shape == SHAPE and (obs == 0).all() and reward == 0.0
    assert info == {"lives": 2, "missing_fields": ["screen"]}


def test_single_payload_raises_the_rows_error():
    reply = BatchResult(observation={"screen": [None]}, reward=[None], done=[False], truncated=[False], errors=[RowError(0, "ENV_ERROR", "boom", True)])
    with pytest.raises(ServerError, match="boom"):
        single_payload(reply, None)


def test_wire_fields_of_one_discrete_action():
    action = _schema().action
    assert action.wire_fields(2) == {"button": 2}
    assert type(action.wire_fields(np.int64(1))["button"]) is int
    for bad in (3, -1, 1.5, "1", None):
        with pytest.raises(ValueError, match="Press.button"):
            action.wire_fields(bad)


def test_a_used_observation_spec_still_pickles():
    # FieldSpec caches its space's from_wire implementation at the first decode.
    observation = _schema().observation
    frame = np.full(SHAPE, 9, np.uint8)
    observation.decode({"screen": frame})
    copy = pickle.loads(pickle.dumps(observation))
    decoded, missing = copy.decode({"screen": frame.tolist()})
    assert (decoded == frame).all() and decoded.dtype == np.uint8 and missing == []


def test_a_reply_survives_the_wire_with_and_without_its_rarer_parts():
    # The frame leaves out metadata, errors, shm and autoreset when the reply has none.
    plain = BatchResult(observation={"screen": [None], "lives": [3]}, reward=[0.5], done=[False], truncated=[False], shm=["screen"], seq=7)
    full = BatchResult(
        observation={"screen": [None, None], "lives": [None, 1]}, reward=[None, 1.0], done=[False, True], truncated=[False, False],
        metadata=[{}, {"why": "won"}], errors=[RowError(0, "EXECUTION_ERROR", "boom", True)], shm=["screen"], autoreset_rows=[1],
        autoreset=BatchResult(observation={"screen": [np.zeros(SHAPE, np.uint8)], "lives": [3]}, reward=[None], done=[False], truncated=[False]), seq=8,
    )
    assert set(plain.wire()) == {"type", "seq", "observation", "reward", "done", "truncated", "shm"}
    for reply in (plain, full):
        again = decode_batch_reply(encode_msgpack(reply.wire()))
        screen = reply.autoreset and reply.autoreset.observation["screen"][0]
        if screen is not None:  # arrays compare by value
            assert (again.autoreset.observation["screen"][0] == screen).all()
            again.autoreset.observation["screen"][0] = reply.autoreset.observation["screen"][0] = None
        assert again == reply


def test_encoding_goes_on_after_a_large_message_and_after_one_that_fails():
    small = {"type": "step", "ids": [0], "actions": {"button": [2]}}
    protocol._free_packers.clear()
    assert decode_msgpack(encode_msgpack(small)) == small
    assert len(protocol._free_packers) == 1  # a small message leaves its packer for the next
    big = np.arange(3 << 20, dtype=np.int64).astype(np.uint8)  # 3 MB: the packer is let go after it
    assert (decode_msgpack(encode_msgpack({"big": big}))["big"] == big).all()
    assert protocol._free_packers == []
    with pytest.raises(TypeError, match="cannot encode object"):
        encode_msgpack({"ok": [1, 2], "bad": object()})
    assert protocol._free_packers == []  # a packer left mid-message is not reused
    assert decode_msgpack(encode_msgpack(small)) == small
    assert len(protocol._free_packers) == 1


def test_threads_encoding_at_once_each_get_their_own_frames():
    # A packer is in one message at a time: an array's encoding runs Python code (where
    # another thread may take the GIL and pack its own message) in the middle of a frame.
    def encode_many(worker: int) -> bool:
        for i in range(2000):
            message = {"n": [worker, i], "a": np.full(64, worker, np.uint8)}
            again = decode_msgpack(encode_msgpack(message))
            if again["n"] != message["n"] or not (again["a"] == message["a"]).all():
                return False
        return True

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as they can
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert all(pool.map(encode_many, range(4)))
    finally:
        sys.setswitchinterval(interval)
    assert len(protocol._free_packers) <= 5  # at most one per message packed at once (and the test's own)


def test_a_used_action_spec_and_schema_still_pickle():
    # ModelSpec caches closures (per-field checks, wire short paths) at first use; they stay out of the pickle.
    schema = _schema()
    assert schema.action.wire_fields(2) == {"button": 2}
    server_side = ModelSpec.from_model(Press)
    assert [a.button for a in server_side.build_batch({"button": [1, 2]}, 2)] == [1, 2]
    assert server_side.build({"button": 0}).button == 0
    for used in (schema, server_side):
        again = pickle.loads(pickle.dumps(used))
        spec = again.action if used is schema else again
        assert spec.wire_fields(1) == {"button": 1}
        with pytest.raises(ValueError, match="Press.button"):
            spec.wire_fields(3)
    assert pickle.loads(pickle.dumps(server_side)).build({"button": 2}) == Press(button=2)
