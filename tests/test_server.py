"""The server app speaks OpenEnv's protocol; bad input gets OpenEnv's error replies
and the session survives. In-process (no socket), as httpx/Starlette test clients do."""

import json

import pytest
from fastapi.testclient import TestClient

from gym_openenv.protocol import BATCH_CAPABILITY, decode_msgpack, encode_msgpack
from gym_openenv.server import create_app
from gym_openenv.server.host import ServerSettings
from gym_openenv.servers.echo.server.environment import EchoEnvironment


@pytest.fixture
def client():
    app = create_app(EchoEnvironment, {}, ServerSettings(max_sessions=2, idle_timeout=None))
    with TestClient(app) as c:
        yield c


def test_http_routes(client):
    assert client.get("/health").json()["status"] == "healthy"
    schema = client.get("/schema").json()
    assert set(schema) == {"action", "observation", "state"}
    assert schema["action"]["properties"]["message"]["x-gym-space"]["type"] == "Text"
    meta = client.get("/metadata").json()
    assert meta["name"] == "echo" and BATCH_CAPABILITY in meta["capabilities"]
    assert client.post("/reset", json={"seed": 1}).json()["observation"] == {"echoed_message": "", "message_length": 0}
    step = client.post("/step", json={"action": {"message": "hey"}}).json()
    assert step["observation"]["echoed_message"] == "hey" and step["reward"] == pytest.approx(0.3)
    bad = client.post("/step", json={"action": {"message": 3}})
    assert bad.status_code == 422 and "EchoAction.message" in bad.json()["detail"]
    assert client.get("/state").json()["step_count"] == 0


def test_websocket_session_and_error_codes(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "reset", "data": {"seed": 3}}))
        assert ws.receive_json()["type"] == "observation"

        ws.send_text("{not json")
        assert ws.receive_json()["data"]["code"] == "INVALID_JSON"
        ws.send_text(json.dumps({"type": "fly"}))
        assert ws.receive_json()["data"]["code"] == "UNKNOWN_TYPE"
        ws.send_text(json.dumps({"type": "step"}))
        assert ws.receive_json()["data"]["code"] == "VALIDATION_ERROR"
        ws.send_text(json.dumps({"type": "step", "data": {"message": ["x"]}}))
        reply = ws.receive_json()["data"]
        assert reply["code"] == "VALIDATION_ERROR" and "EchoAction.message" in reply["message"]

        # The session survived every bad frame and still counts its steps.
        ws.send_text(json.dumps({"type": "step", "data": {"message": "ok"}}))
        assert ws.receive_json()["data"]["observation"]["echoed_message"] == "ok"
        ws.send_text(json.dumps({"type": "state"}))
        assert ws.receive_json()["data"]["step_count"] == 1
        ws.send_text(json.dumps({"type": "close"}))


def test_capacity_reached_is_an_error_not_a_hang(client):
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
        for ws in (a, b):
            ws.send_text(json.dumps({"type": "reset"}))
            ws.receive_json()
        with client.websocket_connect("/ws") as c:
            reply = c.receive_json()
            assert reply["data"]["code"] == "CAPACITY_REACHED"
            assert "2 of 2" in reply["data"]["message"]
    assert client.get("/health").json()["active_sessions"] == 0


def test_environment_errors_are_execution_errors():
    app = create_app(EchoEnvironment, {"max_steps": 0}, ServerSettings(max_sessions=2))
    with TestClient(app) as c, c.websocket_connect("/ws") as ws:
        reply = ws.receive_json()
        assert reply["data"]["code"] == "FACTORY_ERROR" and "max_steps" in reply["data"]["message"]


def test_streaming_step_sends_partials_then_the_result(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "reset"}))
        ws.receive_json()
        ws.send_text(json.dumps({"type": "step", "data": {"message": "s"}, "stream": True}))
        kinds = [ws.receive_json()["type"], ws.receive_json()["type"]]
        assert kinds == ["partial_observation", "observation"]


def test_batch_protocol(client):
    with client.websocket_connect("/ws/batch") as ws:
        def ask(message):
            ws.send_bytes(encode_msgpack(message))
            return decode_msgpack(ws.receive_bytes())

        assert ask({"type": "open", "n": 3})["data"]["code"] == "CAPACITY_REACHED"  # all or nothing
        ids = ask({"type": "open", "n": 2})["ids"]
        reset = ask({"type": "reset", "ids": ids, "seeds": [1, 2]})
        assert reset["type"] == "batch" and reset["done"] == [False, False]
        step = ask({"type": "step", "ids": ids, "actions": {"message": ["a", "bb"]}})
        assert step["observation"]["echoed_message"] == ["a", "bb"]
        assert step["reward"] == pytest.approx([0.1, 0.2])
        bad = ask({"type": "step", "ids": ids, "actions": {"message": ["a", 5]}})
        assert bad["data"]["code"] == "VALIDATION_ERROR"
        ws.send_bytes(b"\xc1garbage")
        assert decode_msgpack(ws.receive_bytes())["data"]["code"] == "INVALID_JSON"
        assert ask({"type": "warp"})["data"]["code"] == "UNKNOWN_TYPE"
        assert ask({"type": "close", "ids": ids})["ids"] == ids
