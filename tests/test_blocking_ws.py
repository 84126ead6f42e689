"""OpenEnv JSON sessions driven from the caller's thread (gym_openenv.blocking_ws), the
transport of ``make_vec(..., protocol="openenv")`` and of foreign OpenEnv servers.

Against real servers: ours (``python -m gym_openenv.server``), openenv-core's own
(uvicorn serving tests/upstream_style/pick_env.py, compared with openenv-core's
client), and loopback websockets servers that misbehave in ways no real server
of ours does (garbage frames, a refusal sent before the client asks).
"""

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import gymnasium as gym
import httpx
import numpy as np
import pytest
from gymnasium import spaces
from openenv.core.generic_client import GenericEnvClient
from websockets.sync.server import serve as serve_websockets

from gym_openenv import CapacityReached, ConnectionLost, RequestTimeout, Unauthorized
from gym_openenv.blocking_ws import BlockingSession, close_all, connect_all, receive_all
from gym_openenv.client import AsyncSession, LoopThread
from gym_openenv.protocol import encode_json
from gym_openenv.providers import LocalProcessProvider
from tests.conftest import ECHO
from tests.test_foreign_servers import UPSTREAM_STYLE, serve, stop

FAULTY = "tests.batch_fault_envs:FaultyEnvironment"


@pytest.fixture(scope="module")
def faulty_server():
    with LocalProcessProvider(FAULTY, server_args=["--step-timeout", "60", "--max-sessions", "64"]) as server:
        yield server


@pytest.fixture(scope="module")
def pick_server():
    """openenv-core's own server (create_app + uvicorn), pinging its clients every half
    second and dropping one that has not answered within 3 s (uvicorn's default: 20 s)."""
    url, process = serve("pick_env:app", UPSTREAM_STYLE, "--ws-ping-interval", "0.5", "--ws-ping-timeout", "3")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def tls_pick_server(tmp_path_factory):
    """pick_env served by uvicorn over TLS (a self-signed certificate for 127.0.0.1); (its URL, the certificate)."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "pick_env:app", "--host", "127.0.0.1", "--port", str(port),
         "--ssl-keyfile", str(key), "--ssl-certfile", str(cert)],
        cwd=UPSTREAM_STYLE, env={**os.environ, "PYTHONPATH": str(UPSTREAM_STYLE)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", verify=ssl.create_default_context(cafile=cert)).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the TLS server did not answer /health")
        yield url, cert
    finally:
        stop(process)


@contextmanager
def loopback_server(handler):
    """A websockets server on loopback, running ``handler(connection)`` for each client; its URL."""
    server = serve_websockets(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(10)


# --- the vector env's path ------------------------------------------------------------


def test_make_vec_on_the_json_protocol_is_answered_in_the_callers_thread(echo_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=3, url=echo_server, protocol="openenv")
    try:
        assert not envs.unwrapped.batched and envs.unwrapped._pool.in_callers_thread
        envs.reset(seed=0)
        obs, reward, terminated, truncated, info = envs.step(("a", "bb", "ccc"))
        assert obs == ("a", "bb", "ccc") and info["message_length"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(reward, [0.1, 0.2, 0.3])
        envs.unwrapped.send(("x",), env_ids=[2])  # partial batches: one call pending per env set
        envs.unwrapped.send(("y", "z"), env_ids=[0, 1])
        assert envs.unwrapped.recv()[0] == ("x",)
        assert envs.unwrapped.recv()[0] == ("y", "z")
    finally:
        envs.close()


def test_rollouts_match_openenv_cores_own_client(pick_server):
    seeds, actions = [3, 4], [[0, 0], [1, 3]]  # 3 is illegal for env 1: its episode ends
    envs = gym.make_vec("openenv/remote-v0", url=pick_server, num_envs=2, protocol="openenv", action_space=spaces.Discrete(5))
    try:
        assert envs.unwrapped._pool.in_callers_thread
        ours = [([a.tolist() for a in envs.reset(seed=seeds)[0]["slots"]], [None, None], [False, False])]
        for step in actions:
            obs, reward, terminated, _, _ = envs.step(np.array(step))
            ours.append(([a.tolist() for a in obs["slots"]], reward.tolist(), terminated.tolist()))
    finally:
        envs.close()

    async def theirs() -> list:
        clients = [GenericEnvClient(base_url=pick_server) for _ in seeds]
        await asyncio.gather(*(c.connect() for c in clients))
        rollout = [await asyncio.gather(*(c.reset(seed=s) for c, s in zip(clients, seeds)))]
        for step in actions:
            rollout.append(await asyncio.gather(*(c.step({"slot": a}) for c, a in zip(clients, step))))
        await asyncio.gather(*(c.close() for c in clients))
        return rollout

    expected = [
        ([r.observation["slots"] for r in results], [r.reward if i else None for r in results], [r.done for r in results])
        for i, results in enumerate(asyncio.run(theirs()))
    ]
    assert ours == expected and expected[-1][2] == [False, True]


def test_a_tls_server_keeps_the_event_loop_sessions(tls_pick_server, monkeypatch):
    # wss:// stays on AsyncSession (websockets' own TLS); the results are the same.
    url, cert = tls_pick_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted by httpx and by websockets' default context
    envs = gym.make_vec("openenv/remote-v0", url=url, num_envs=2, action_space=spaces.Discrete(5))
    try:
        assert not envs.unwrapped._pool.in_callers_thread
        obs, _ = envs.reset(seed=[3, 4])
        assert [a.tolist() for a in obs["slots"]] == [[0, 0, 1, 1, 0], [0, 1, 0, 1, 1]]  # as over ws:// (above)
        obs, reward, terminated, _, _ = envs.step(np.array([0, 3]))
        assert reward.tolist() == [1.0, -1.0] and terminated.tolist() == [False, True]
    finally:
        envs.close()
    with gym.make("openenv/remote-v0", url=url, action_space=spaces.Discrete(5)) as env:
        assert isinstance(env.unwrapped._session, AsyncSession)
        env.reset(seed=3)
        assert env.step(0)[1] == 1.0


def test_one_env_raising_fails_its_own_row_only(faulty_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=3, url=faulty_server.base_url, protocol="openenv")
    try:
        envs.reset()
        obs, rewards, _, _, info = envs.step(["ok", "raise", "ok"])
        assert obs == ("ok", "", "ok") and rewards.tolist() == [1.0, 0.0, 1.0]
        assert info["_openenv_error"].tolist() == [False, True, False]
        assert "boom at step 1" in info["openenv_error"][1]
        obs, _, _, _, info = envs.step(["a", "b", "c"])
        assert obs == ("a", "b", "c") and info["steps"].tolist() == [2, 1, 2]
    finally:
        envs.close()


def test_a_server_killed_mid_step_is_restarted_and_its_envs_start_over():
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, num_servers=2, protocol="openenv", timeout=30)
    try:
        envs.reset(seed=0)
        first = envs.unwrapped._providers[0].pid
        os.kill(first, signal.SIGSTOP)  # it takes the requests in but answers none
        envs.unwrapped.send(("a", "b", "c", "d"))
        os.kill(first, signal.SIGKILL)  # and dies with them
        obs, _, _, _, info = envs.unwrapped.recv()
        assert info["openenv_restarted"].tolist() == [True, True, False, False]
        assert obs[2:] == ("c", "d")
        obs, *_ = envs.step(("e", "f", "g", "h"))
        assert obs == ("e", "f", "g", "h")
        assert envs.unwrapped._providers[0].pid != first
    finally:
        envs.close()


def test_a_frozen_server_is_a_request_timeout_within_the_timeout():
    with LocalProcessProvider(ECHO) as server:
        envs = gym.make_vec("openenv/remote-v0", num_envs=2, url=server.base_url, protocol="openenv", timeout=2, on_server_failure="raise")
        try:
            envs.reset(seed=0)
            os.kill(server.pid, signal.SIGSTOP)
            try:
                start = time.monotonic()
                with pytest.raises(RequestTimeout) as caught:
                    envs.step(("a", "b"))
                assert 2 <= time.monotonic() - start < 60  # the timeout, not a hang (60: a loaded machine)
                assert "within 2" in str(caught.value) and "None" not in str(caught.value)  # the server's own timeout, as raised
            finally:
                os.kill(server.pid, signal.SIGCONT)
        finally:
            envs.close()


def test_a_hung_env_times_out_and_the_late_reply_is_never_read_as_the_next(faulty_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=2, url=faulty_server.base_url, protocol="openenv", timeout=3)
    try:
        envs.reset()
        obs, rewards, _, _, info = envs.step(["hang:6", "ok"])
        # One session timed out: its server (not ours to restart) is reconnected, both envs start over.
        assert info["_openenv_error"].all() and "no reply" in info["openenv_error"][0]
        time.sleep(4)  # the hung step's reply comes meanwhile, on the dropped connection
        for step in (1, 2, 3):
            obs, _, _, _, info = envs.step(["ok", f"ok{step}"])
            assert obs == ("ok", f"ok{step}") and info["steps"].tolist() == [step, step]
    finally:
        envs.close()


def test_after_the_callers_own_recv_timeout_the_envs_start_over_flagged(faulty_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=2, url=faulty_server.base_url, protocol="openenv", timeout=30)
    try:
        envs.reset()
        envs.unwrapped.send(["hang:3", "ok"])
        with pytest.raises(RequestTimeout):
            envs.unwrapped.recv(timeout=0.5)
        obs, _, _, _, info = envs.step(["ok", "ok"])  # env 0's session went with its connection
        assert info["openenv_restarted"].all() and obs == ("", "")
        obs, _, _, _, info = envs.step(["a", "b"])
        assert obs == ("a", "b") and info["steps"].tolist() == [1, 1]
    finally:
        envs.close()


# --- sessions, one by one ---------------------------------------------------------------


def test_gym_make_on_the_json_protocol_is_a_blocking_session(echo_server):
    with gym.make("openenv/remote-v0", url=echo_server, protocol="openenv") as env:
        assert isinstance(env.unwrapped._session, BlockingSession)
        env.reset(seed=0)
        obs, reward, *_ = env.step("hi")
        assert obs == "hi" and reward == pytest.approx(0.2)
        assert env.unwrapped.state()["step_count"] == 1


def test_a_blocking_session_times_out_and_reconnects():
    with LocalProcessProvider(ECHO) as server:
        session = BlockingSession(server.base_url, timeout=1)
        session.reset()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RequestTimeout):
                session.step({"message": "late"})
            assert not session.connected  # the late reply must never be read as the next one's
        finally:
            os.kill(server.pid, signal.SIGCONT)
        with pytest.raises(ConnectionLost, match="no reply.*reset"):
            session.step({"message": "on"})  # the episode went with the connection
        session.timeout = 30
        session.reset()  # a new connection, a new session
        assert session.step({"message": "next"})["observation"]["echoed_message"] == "next"
        session.close()


def test_idle_sessions_keep_answering_the_servers_pings(pick_server):
    # The server drops a client that has not answered its ping within 3 s; this one reads
    # nothing for 8 s (the caller busy elsewhere), and must still be there.
    sessions = [BlockingSession(pick_server, timeout=30) for _ in range(2)]
    connect_all(sessions, 30)
    try:
        for s in sessions:
            s.reset(seed=1)
        time.sleep(8)
        for s in sessions:
            s.send({"type": "step", "data": {"slot": 0}})
        replies = receive_all(sessions)
        assert not [r for r in replies if isinstance(r, Exception)]  # ConnectionLost if the server dropped us
        assert [r["data"]["observation"]["slots"][0] for r in replies] == [1, 1]
    finally:
        close_all(sessions)


def test_a_connection_the_server_closed_is_connection_lost_not_a_silent_new_session():
    def one_reply_per_connection(ws):
        ws.recv()
        ws.send(encode_json({"type": "observation", "data": {"observation": {"n": 1}, "reward": 0.0, "done": False}}))
        ws.close()

    with loopback_server(one_reply_per_connection) as url:
        session = BlockingSession(url, timeout=10)
        assert session.step({"message": "a"})["observation"] == {"n": 1}
        time.sleep(0.5)  # closed meanwhile
        with pytest.raises(ConnectionLost, match="closed"):
            session.step({"message": "b"})  # the episode is gone: say so, do not start another
        with pytest.raises(ConnectionLost, match="reset"):
            session.step({"message": "c"})  # and again, until a reset
        assert session.reset()["observation"] == {"n": 1}  # a new connection, a new session
        session.close()


def test_a_garbage_reply_is_a_clear_error_on_both_json_sessions():
    def answer_garbage(ws):
        for _ in ws:
            ws.send("this is not json")

    with loopback_server(answer_garbage) as url:
        session = BlockingSession(url, timeout=10)
        with pytest.raises(ConnectionLost, match="not JSON.*this is not json"):
            session.step({"message": "hi"})
        assert not session.connected  # nothing after garbage can be trusted
        loop = LoopThread.shared()
        with pytest.raises(ConnectionLost, match="not JSON.*this is not json"):
            loop.run(AsyncSession(url, timeout=10).step({"message": "hi"}), 30)


def test_a_reply_that_is_json_but_not_openenv_is_a_clear_error():
    def answer_a_list(ws):
        for _ in ws:
            ws.send("[1, 2, 3]")

    with loopback_server(answer_a_list) as url:
        with pytest.raises(ConnectionLost, match="not an OpenEnv reply"):
            BlockingSession(url, timeout=10).step({"message": "hi"})


def test_a_refusal_sent_before_the_first_request_is_raised_not_connection_lost():
    # OpenEnv servers refuse a session by sending an error and closing, before any request.
    def refuse(ws):
        ws.send(encode_json({"type": "error", "data": {"code": "CAPACITY_REACHED", "message": "no room here"}}))
        ws.close(1013)

    with loopback_server(refuse) as url:
        session = BlockingSession(url, timeout=10)
        session.connect()
        time.sleep(1.5)  # the error and the close are in (and read by the keepalive thread) before we ask
        with pytest.raises(CapacityReached, match="no room here"):
            session.step({"message": "hi"})
        with pytest.raises(ConnectionLost, match="no room here.*reset"):  # the session is gone: say why
            session.step({"message": "hi"})
        with pytest.raises(CapacityReached, match="no room here"):  # reset: a new connection, refused again
            session.reset()


def test_the_handshake_carries_the_token_and_a_refusal_is_unauthorized():
    with LocalProcessProvider(ECHO, env={"OPENENV_TOKEN": "s3cret"}) as server:
        with pytest.raises(Unauthorized, match="bearer token"):
            BlockingSession(server.base_url, timeout=10).connect()
        session = BlockingSession(server.base_url, timeout=10, token="s3cret")
        session.reset()
        assert session.step({"message": "in"})["observation"]["echoed_message"] == "in"
        session.close()
