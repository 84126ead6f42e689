"""Endpoint: one way to reach a server (TCP or Unix socket, token, health), against real servers."""

import asyncio
import json
import time

import pytest

from gym_openenv.endpoint import Endpoint
from gym_openenv.errors import ConnectionLost, ServerStartError, Unauthorized
from gym_openenv.providers import LocalProcessProvider
from tests.conftest import ECHO


@pytest.fixture(scope="module")
def guarded_unix_server(tmp_path_factory):
    sock = str(tmp_path_factory.mktemp("endpoint") / "server.sock")
    with LocalProcessProvider(ECHO, uds=sock, env={"OPENENV_TOKEN": "t0ken"}) as server:
        yield server


def test_a_unix_socket_server_with_a_token(guarded_unix_server):
    endpoint = guarded_unix_server.endpoint
    assert endpoint.uds and endpoint.is_local and endpoint.token == "t0ken"
    assert endpoint.health() and endpoint.wait_healthy(5) == 1

    async def run():
        assert (await endpoint.get_json("/metadata"))["name"] == "echo"
        ws = await endpoint.connect("/ws", timeout=10, max_size=1 << 20)
        await ws.send(json.dumps({"type": "step", "data": {"message": "over uds"}}))
        assert json.loads(await ws.recv())["data"]["observation"]["echoed_message"] == "over uds"
        await ws.close()
        for token in (None, "wrong"):
            stranger = Endpoint.parse(endpoint.url, token)
            with pytest.raises(Unauthorized, match="HTTP 401"):
                await stranger.get_json("/schema")
            with pytest.raises(Unauthorized, match="HTTP 401"):
                await stranger.connect("/ws", timeout=10, max_size=1 << 20)

    asyncio.run(run())
    with pytest.raises(Unauthorized):
        Endpoint.parse(endpoint.url).wait_healthy(5)


def test_nothing_listening_is_connection_lost_or_a_start_error(tmp_path):
    endpoint = Endpoint.parse(f"http+unix://{tmp_path}/nobody.sock")
    assert not endpoint.health(timeout=1)
    with pytest.raises(ConnectionLost):
        asyncio.run(endpoint.connect("/ws", timeout=5, max_size=1 << 20))
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"did not become healthy within 0.5s \(\d+ attempts"):
        endpoint.wait_healthy(0.5, backoff=0.05)
    assert time.monotonic() - started < 5
    with pytest.raises(ServerStartError, match="exited with code 3"):
        endpoint.wait_healthy(30, stopped=lambda: "the server exited with code 3")


def test_urls_are_checked():
    with pytest.raises(ValueError, match="http://, https:// or http\\+unix://"):
        Endpoint.parse("ftp://example.org")
    assert Endpoint.parse("http://[::1]:8000/").is_local
    assert Endpoint.parse("https://example.org/base").ws_url("/ws") == "wss://example.org/base/ws"
    assert Endpoint.parse("http://h:1", headers={"X-Trace": "1"}, token="t").request_headers() == {"X-Trace": "1", "Authorization": "Bearer t"}
