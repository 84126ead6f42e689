"""Faults against real servers on loopback: crashes, drops, timeouts, capacity, auth."""

import asyncio
import json
import os
import signal
import socket
import time

import gymnasium as gym
import httpx
import numpy as np
import psutil
import pytest
import websockets

from gym_openenv import CapacityReached, ConnectionLost, RequestTimeout, ServerError, Unauthorized
from gym_openenv.client import AsyncSession
from gym_openenv.providers import LocalProcessProvider
from tests.conftest import ECHO

SLEEPY = "tests.envs:SleepyEnvironment"


def words(n, prefix="w"):
    return tuple(f"{prefix}{i}" for i in range(n))


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_vector_env_restarts_a_killed_server_and_training_continues():
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, num_servers=2)
    try:
        envs.reset(seed=0)
        envs.step(words(4))
        dead = envs._providers[0].pid
        os.kill(dead, signal.SIGKILL)
        start = time.monotonic()
        obs, rewards, terminated, truncated, info = envs.step(words(4, "x"))
        recovery = time.monotonic() - start
        assert info["openenv_restarted"].tolist() == [True, True, False, False]
        assert obs == ("", "", "x2", "x3") and rewards[:2].tolist() == [0.0, 0.0]
        assert not (terminated | truncated).any()
        assert recovery < 10, recovery  # ~1 s on an idle machine; bounded, never a hang
        assert envs.step(words(4, "y"))[0] == words(4, "y")
        assert gone(dead)
    finally:
        envs.close()


def test_a_frozen_server_is_replaced_without_waiting_out_its_stop_grace():
    """SIGSTOP: the server neither answers nor handles SIGTERM. The step times out, the
    provider stops it (SIGTERM, then SIGCONT so it can act on it) and starts a new one;
    without the SIGCONT the provider would wait its whole 10 s grace before killing it."""
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, num_servers=2, timeout=3)
    try:
        envs.reset()
        frozen = envs._providers[0].pid
        os.kill(frozen, signal.SIGSTOP)
        deadline = time.monotonic() + 10  # the stop lands when the process is next scheduled
        while psutil.Process(frozen).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        obs, _, _, _, info = envs.step(words(4))
        took = time.monotonic() - start
        assert info["_openenv_restarted"].all() and obs[2:] == words(4)[2:]
        assert took < 11, took  # 3 s step timeout + a restart; 13 s or more with the grace spent
        assert gone(frozen)
        assert envs.step(words(4, "y"))[0] == words(4, "y")
    finally:
        envs.close()


def test_vector_env_can_raise_instead():
    envs = gym.make_vec("openenv/echo-v0", num_envs=2, num_servers=1, on_server_failure="raise")
    try:
        envs.reset()
        os.kill(envs._providers[0].pid, signal.SIGKILL)
        with pytest.raises(ConnectionLost):
            envs.step(words(2))
    finally:
        envs.close()


def test_single_env_reports_the_lost_episode_and_reconnects_by_option():
    env = gym.make("openenv/echo-v0", reconnect=True)
    try:
        env.reset()
        os.kill(env.unwrapped._provider.pid, signal.SIGKILL)
        with pytest.raises(ConnectionLost, match="episode is lost"):
            env.step("a")
        env.reset()  # restarts the server
        assert env.step("b")[0] == "b"
    finally:
        env.close()


def test_dropped_connection_reconnects_between_episodes(echo_server):
    async def run():
        session = AsyncSession(echo_server)
        await session.reset()
        session._channel.ws.transport.abort()  # the network drops the connection
        with pytest.raises(ConnectionLost):
            await session.step({"message": "x"})
        payload = await session.reset()  # a new connection and session
        assert payload["observation"]["echoed_message"] == ""
        await session.close()

    asyncio.run(run())


def test_dropped_sessions_free_their_slots():
    with LocalProcessProvider(ECHO, server_args=["--max-sessions", "8"]) as server:
        ws_url = server.base_url.replace("http", "ws") + "/ws"

        async def churn():
            for _ in range(1000):  # open and drop, with and without a goodbye
                ws = await websockets.connect(ws_url)
                await ws.send(json.dumps({"type": "reset"}))
                await ws.recv()
                ws.transport.abort()
            await asyncio.sleep(0.5)
            full = [await websockets.connect(ws_url) for _ in range(8)]
            for ws in full:
                await ws.send(json.dumps({"type": "reset"}))
                assert json.loads(await ws.recv())["type"] == "observation"
            extra = await websockets.connect(ws_url)
            assert json.loads(await extra.recv())["data"]["code"] == "CAPACITY_REACHED"
            for ws in full + [extra]:
                await ws.close()

        asyncio.run(churn())
        assert httpx.get(f"{server.base_url}/health").json()["active_sessions"] == 0


def test_a_hanging_step_times_out_and_other_sessions_keep_stepping():
    with LocalProcessProvider(SLEEPY, server_args=["--step-timeout", "1", "--workers", "4"]) as server:
        async def run():
            hung, healthy = AsyncSession(server.base_url), AsyncSession(server.base_url)
            await hung.reset()
            await healthy.reset()
            stuck = asyncio.ensure_future(hung.step({"seconds": 30.0}))
            for _ in range(5):  # while one session hangs, another keeps stepping
                assert (await healthy.step({"seconds": 0.0}))["reward"] == 1.0
            with pytest.raises(ServerError, match="EXECUTION_ERROR.*did not finish within 1"):
                await stuck
            await healthy.close()
            await hung.close()

        asyncio.run(run())


def test_client_timeout_is_bounded():
    with LocalProcessProvider(SLEEPY) as server:
        env = gym.make("openenv/remote-v0", url=server.base_url, timeout=1.0)
        try:
            env.reset()
            start = time.monotonic()
            with pytest.raises(RequestTimeout, match="no reply from the server within 1"):
                env.step(np.array(5.0))
            assert time.monotonic() - start < 3
        finally:
            env.close()


def test_vector_env_never_half_starts_over_capacity():
    with LocalProcessProvider(ECHO, server_args=["--max-sessions", "4"]) as server:
        with pytest.raises(CapacityReached, match="cannot open 6 sessions"):
            gym.make_vec("openenv/remote-v0", num_envs=6, url=server.base_url)
        assert httpx.get(f"{server.base_url}/health").json()["active_sessions"] == 0
        envs = gym.make_vec("openenv/remote-v0", num_envs=4, url=server.base_url)
        envs.close()


def test_bearer_token_guards_every_route():
    with LocalProcessProvider(ECHO, env={"OPENENV_TOKEN": "s3cret"}) as server:
        url = server.base_url
        for path in ("/schema", "/metadata", "/state"):
            assert httpx.get(url + path).status_code == 401
        assert httpx.post(url + "/reset", json={}).status_code == 401
        headers = {"Authorization": "Bearer s3cret"}
        assert httpx.get(url + "/schema", headers=headers).status_code == 200
        with pytest.raises(Unauthorized, match="bearer token"):
            gym.make("openenv/remote-v0", url=url)
        env = gym.make("openenv/remote-v0", url=url, token="s3cret")
        env.reset()
        assert env.step("ok")[0] == "ok"
        env.close()


def test_routes_reveal_no_environment_or_files():
    secret = "do-not-leak-7f3a"
    with LocalProcessProvider(ECHO, env={"SERVER_SECRET": secret}) as server:
        for path in ("/health", "/schema", "/metadata", "/state", "/openapi.json"):
            assert secret not in httpx.get(server.base_url + path).text
        assert "/root" not in httpx.get(server.base_url + "/metadata").text


def test_request_bodies_are_size_limited():
    limit = 64 * 1024 * 1024
    with LocalProcessProvider(ECHO) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            # Announce a body over the limit; the server answers before reading it.
            sock.sendall(
                f"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {limit + 1}\r\n\r\n".encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_servers_bind_loopback_by_default():
    with LocalProcessProvider(ECHO) as server:
        conns = [c for c in psutil.Process(server.pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns)
