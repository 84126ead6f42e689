"""Hostile and unlucky clients against real server processes on loopback:
hung steps, slow or endless HTTP requests, pathological JSON, wrong tokens."""

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets

from gym_openenv import Unauthorized
from gym_openenv.client import AsyncSession
from gym_openenv.providers import LocalProcessProvider
from tests.conftest import ECHO

SLEEPY = "tests.envs:SleepyEnvironment"
WATCHED = "tests.envs:CloseWatchEnvironment"


def ws_url(server: LocalProcessProvider) -> str:
    return server.base_url.replace("http://", "ws://") + "/ws"


async def ask(ws, message: dict | str) -> dict:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(await ws.recv())


# --- worker budget: one client's hung steps never starve another ----------------


def test_hung_steps_of_some_clients_never_starve_a_healthy_one():
    # Default settings: before the per-client budget, 4 worker threads served every client.
    with LocalProcessProvider(SLEEPY, server_args=["--step-timeout", "2"]) as server:

        async def run():
            hostile = [await websockets.connect(ws_url(server)) for _ in range(6)]
            for ws in hostile:
                await ask(ws, {"type": "reset"})
                await ws.send(json.dumps({"type": "step", "data": {"seconds": 60.0}}))
            await asyncio.sleep(0.5)  # every hostile step is now inside its worker
            healthy = await websockets.connect(ws_url(server))
            await ask(healthy, {"type": "reset"})
            for _ in range(3):  # an observation, not a step timeout: it found a worker within 2 s
                reply = await ask(healthy, {"type": "step", "data": {"seconds": 0.0}})
                assert reply["type"] == "observation", reply
            for ws in hostile:  # each hung client hears of its own timeout, and only that
                reply = json.loads(await ws.recv())["data"]
                assert reply["code"] == "EXECUTION_ERROR" and reply["episode_lost"] is True
            for ws in [*hostile, healthy]:
                await ws.close()

        asyncio.run(run())


def test_a_timed_out_session_gets_a_new_environment_and_close_waits_for_the_step(tmp_path):
    log = tmp_path / "close.log"
    args = ["--step-timeout", "1", "--env-kwargs", json.dumps({"log": str(log)})]
    with LocalProcessProvider(WATCHED, server_args=args) as server:

        async def run():
            async with websockets.connect(ws_url(server)) as ws:
                await ask(ws, {"type": "reset"})
                reply = await ask(ws, {"type": "step", "data": {"seconds": 3.0}})
                assert reply["data"]["code"] == "EXECUTION_ERROR"
                assert "call reset()" in reply["data"]["message"] and reply["data"]["episode_lost"]
                # Same connection, same session, a new environment: it steps from zero.
                assert (await ask(ws, {"type": "reset"}))["type"] == "observation"
                assert (await ask(ws, {"type": "step", "data": {"seconds": 0.0}}))["data"]["reward"] == 1.0
                assert (await ask(ws, {"type": "state"}))["data"]["step_count"] == 1

        asyncio.run(run())
        # Three closes: the server's startup probe, the new environment (at disconnect), and
        # the hung one, once its step returned: never during it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.1)
    assert log.read_text().splitlines() == ["close", "close", "close"]


def test_a_client_over_its_own_budget_only_waits_itself():
    with LocalProcessProvider(SLEEPY, server_args=["--step-timeout", "1", "--workers-per-client", "2"]) as server:

        async def run():
            async with websockets.connect(ws_url(server)) as ws:
                await ask(ws, {"type": "reset"})
                # Two hung steps hold both of this client's workers (the first one's
                # replacement environment was built with the second).
                for _ in range(2):
                    reply = await ask(ws, {"type": "step", "data": {"seconds": 8.0}})
                    assert reply["data"]["code"] == "EXECUTION_ERROR"
                reply = await ask(ws, {"type": "step", "data": {"seconds": 0.0}})
                assert reply["data"]["code"] == "EXECUTION_ERROR" and "did not start" in reply["data"]["message"]
                async with websockets.connect(ws_url(server)) as other:  # others are not affected
                    await ask(other, {"type": "reset"})
                    assert (await ask(other, {"type": "step", "data": {"seconds": 0.0}}))["type"] == "observation"
                await asyncio.sleep(8)  # the hung steps return, the slots come back
                await ask(ws, {"type": "reset"})
                assert (await ask(ws, {"type": "step", "data": {"seconds": 0.0}}))["type"] == "observation"

        asyncio.run(run())


def test_http_step_timeout_is_504_and_hung_http_steps_never_starve_sessions():
    with LocalProcessProvider(SLEEPY, server_args=["--step-timeout", "1"]) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            hung = http.post("/step", json={"action": {"seconds": 3.0}})
            assert hung.status_code == 504 and "did not finish within 1" in hung.json()["detail"]
            assert http.post("/step", json={"action": {"seconds": 0.0}}).json()["reward"] == 1.0

        async def run():
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
                flood = [asyncio.ensure_future(http.post("/step", json={"action": {"seconds": 30.0}})) for _ in range(12)]
                await asyncio.sleep(1.0)
                async with websockets.connect(ws_url(server)) as ws:  # the HTTP routes share one budget
                    await ask(ws, {"type": "reset"})
                    assert (await ask(ws, {"type": "step", "data": {"seconds": 0.0}}))["type"] == "observation"
                assert {r.status_code for r in await asyncio.gather(*flood)} == {504}

        asyncio.run(run())


# --- HTTP limits, for every transfer encoding, and deadlines ----------------------


def _address(server: LocalProcessProvider) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _read_until_closed(sock: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def test_chunked_body_over_the_limit_gets_413_and_is_not_read():
    limit = 1 << 20
    with LocalProcessProvider(ECHO, server_args=["--max-message-bytes", str(limit)]) as server:
        with socket.create_connection(_address(server), timeout=30) as sock:
            sock.sendall(b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            sent = 0
            try:
                for _ in range(256):  # up to 16 MiB, 16 times the limit
                    sock.sendall(chunk)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server refused the rest: what we want
            reply = _read_until_closed(sock, 30)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent < 16 << 20 or b"connection: close" in reply.lower()
        assert httpx.get(server.base_url + "/health").status_code == 200


def test_half_sent_requests_are_dropped_within_the_header_timeout():
    with LocalProcessProvider(ECHO, server_args=["--header-timeout", "1"]) as server:
        socks = [socket.create_connection(_address(server), timeout=30) for _ in range(50)]
        try:
            for i, sock in enumerate(socks):  # request lines and headers, never the blank line
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"GET /hea")
            start = time.monotonic()
            for sock in socks:
                assert _read_until_closed(sock, 20) == b""  # closed by the server, no reply
            assert time.monotonic() - start < 25  # 1 s each, all at once; without the deadline: never
        finally:
            for sock in socks:
                sock.close()
        assert httpx.get(server.base_url + "/health").status_code == 200


def test_a_stalled_body_gets_408():
    with LocalProcessProvider(ECHO, server_args=["--body-timeout", "1"]) as server:
        with socket.create_connection(_address(server), timeout=30) as sock:
            sock.sendall(b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"act")
            assert _read_until_closed(sock, 20).startswith(b"HTTP/1.1 408")


def test_keep_alive_requests_and_idle_websockets_outlive_the_header_timeout():
    with LocalProcessProvider(ECHO, server_args=["--header-timeout", "1", "--keep-alive", "10"]) as server:
        with httpx.Client(base_url=server.base_url) as http:
            assert http.get("/health").status_code == 200
            time.sleep(2)  # idle between requests: the keep-alive timeout applies, not the head's
            assert http.get("/health").status_code == 200

        async def run():
            async with websockets.connect(ws_url(server)) as ws:
                await ask(ws, {"type": "reset"})
                await asyncio.sleep(2)
                assert (await ask(ws, {"type": "step", "data": {"message": "still here"}}))["type"] == "observation"

        asyncio.run(run())


# --- pathological JSON on /ws: an error reply, never a dropped connection ---------


def test_pathological_json_gets_error_replies_and_the_session_survives():
    with LocalProcessProvider(ECHO) as server:

        async def run():
            async with websockets.connect(ws_url(server), max_size=None) as ws:
                await ask(ws, {"type": "reset"})
                deep = '{"type": "step", "data": {"message": ' + "[" * 200_000 + "]" * 200_000 + "}}"
                assert (await ask(ws, deep))["data"]["code"] == "INVALID_JSON"
                huge_seed = '{"type": "reset", "data": {"seed": ' + "7" * 5000 + "}}"
                assert (await ask(ws, huge_seed))["data"]["code"] == "INVALID_JSON"
                nested = {"type": "step", "data": {"message": json.loads("[" * 500 + "]" * 500)}}
                assert (await ask(ws, nested))["data"]["code"] == "VALIDATION_ERROR"
                assert (await ask(ws, {"type": "step", "data": {"message": "alive"}}))["data"]["observation"]["echoed_message"] == "alive"

        asyncio.run(run())


# --- auth --------------------------------------------------------------------------


def test_wrong_token_on_a_websocket_is_unauthorized_not_a_lost_connection():
    with LocalProcessProvider(ECHO, env={"OPENENV_TOKEN": "s3cret"}) as server:

        async def run():
            for token in (None, "wrong"):
                with pytest.raises(Unauthorized):
                    await AsyncSession(server.base_url, token=token).connect()
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                await websockets.connect(ws_url(server) + "/batch", additional_headers={"Authorization": "Bearer wrong"})
            assert refused.value.response.status_code == 401
            session = await AsyncSession(server.base_url, token="s3cret").connect()
            assert (await session.step({"message": "in"}))["observation"]["echoed_message"] == "in"
            await session.close()

        asyncio.run(run())
