"""Fuzzing every route and both WebSocket protocols (run alone: ``pytest -m fuzz``).

The suite runs a few thousand frames; ``OPENENV_FUZZ_CASES=10000 pytest -m fuzz`` is the
long run (10,000 OpenEnv frames, 2,000 batch frames by default).

No input may crash the server or get anything but a clear error: HTTP answers
are never 5xx, every WebSocket frame gets a reply with a ``type``, and the
session still works afterwards.
"""

import json
import os

import hypothesis.strategies as st
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gym_openenv.protocol import decode_msgpack, encode_msgpack
from gym_openenv.providers import LocalProcessProvider
from tests.conftest import ECHO
from gym_openenv.server import create_app
from gym_openenv.server.host import ServerSettings
from gym_openenv.servers.echo.server.environment import EchoEnvironment

pytestmark = pytest.mark.fuzz

APP = create_app(EchoEnvironment, {}, ServerSettings(max_sessions=8, max_message_bytes=1 << 20))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
message_types = st.sampled_from(["reset", "step", "state", "close", "observation", "", "STEP", "mcp", "batch"])
messages = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": message_types}, optional={"data": json_values, "stream": json_values}),
    st.fixed_dictionaries({"type": st.just("step"), "data": st.dictionaries(st.sampled_from(["message", "metadata", "x"]), json_values)}),
)
WS_CASES = int(os.environ.get("OPENENV_FUZZ_CASES", 2_000))
BATCH_CASES = max(500, WS_CASES // 5)


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_http_routes_never_fail_with_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, (case.path, case.body, response.text)


def _ws_frames():
    """Frames for the OpenEnv WebSocket: JSON messages, broken text, binary garbage."""
    return st.one_of(
        messages.map(lambda m: ("text", json.dumps(m))),
        st.text(max_size=200).map(lambda t: ("text", t)),
        st.binary(max_size=200).map(lambda b: ("bytes", b)),
        st.integers(1000, 5000).map(lambda n: ("text", json.dumps({"type": "step", "data": {"message": "x" * n}}))),
    )


@pytest.fixture(scope="module")
def small_server():
    """A real echo server with a 1 MiB message limit."""
    with LocalProcessProvider(ECHO, server_args=["--max-message-bytes", str(1 << 20)]) as server:
        yield server


def test_openenv_websocket_survives_fuzzed_frames(small_server):
    url = small_server.base_url.replace("http", "ws") + "/ws"
    with connect(url, max_size=None) as ws:
        count = 0

        @settings(max_examples=WS_CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(frame=_ws_frames())
        def fuzz(frame):
            nonlocal count
            kind, payload = frame
            if kind == "text" and _is_close(payload):
                return  # a close ends the session by design; not a fault
            ws.send(payload)
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] in ("observation", "state", "error", "partial_observation", "mcp"), reply
            if reply["type"] == "partial_observation":
                assert json.loads(ws.recv(timeout=10))["type"] == "observation"
            if reply["type"] == "error":
                assert reply["data"]["code"] and reply["data"]["message"]
            count += 1

        fuzz()
        assert count >= WS_CASES * 0.9
        ws.send(json.dumps({"type": "reset"}))
        assert json.loads(ws.recv())["type"] == "observation"
        ws.send(json.dumps({"type": "step", "data": {"message": "alive"}}))
        assert json.loads(ws.recv())["data"]["observation"]["echoed_message"] == "alive"


def _is_close(payload: str) -> bool:
    try:
        message = json.loads(payload)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "close"


def test_batch_websocket_survives_fuzzed_frames(small_server):
    batch_messages = st.one_of(
        st.binary(max_size=100),
        json_values.map(lambda v: msgpack.packb(v)),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["open", "reset", "step", "close", "x"])},
            optional={"n": json_values | st.integers(-5, 5), "ids": json_values, "actions": json_values, "seeds": json_values},
        ).map(lambda m: encode_msgpack(m)),
    )
    url = small_server.base_url.replace("http", "ws") + "/ws/batch"
    with connect(url, max_size=None) as ws:

        def ask(frame: bytes) -> dict:
            ws.send(frame)
            return decode_msgpack(ws.recv(timeout=10))

        @settings(max_examples=BATCH_CASES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(frame=batch_messages)
        def fuzz(frame):
            reply = ask(frame)
            assert reply["type"] in ("opened", "batch", "closed", "error"), reply
            if reply["type"] == "opened":  # give the slots back so capacity is never the only answer
                ask(encode_msgpack({"type": "close", "ids": reply["ids"]}))

        fuzz()
        ids = ask(encode_msgpack({"type": "open", "n": 1}))["ids"]
        assert ask(encode_msgpack({"type": "reset", "ids": ids}))["type"] == "batch"


def test_oversized_websocket_messages_are_refused(small_server):
    url = small_server.base_url.replace("http", "ws") + "/ws"
    with connect(url, max_size=None) as ws:
        ws.send(json.dumps({"type": "step", "data": {"message": "x" * (2 << 20)}}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009  # message too big
    with connect(url) as ws:  # the server is fine
        ws.send(json.dumps({"type": "reset"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "observation"
