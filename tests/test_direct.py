"""The direct transport (a co-located server's Unix socket) against real server processes.

The same requests as ``/ws/batch`` must give the same replies, with the same
guarantees: hung calls replaced while the rows after them run, tokens checked,
garbage answered, the connection's threads bounded, and nothing lost when a
server dies. Every test here reaches the server through its direct socket.
"""

import os
import socket
import stat
import threading
import time

import gymnasium as gym
import httpx
import numpy as np
import pytest

from gym_openenv import ConnectionLost, RequestTimeout, ServerError, Unauthorized
from gym_openenv.direct import DirectConnection, DirectSession, connect_direct
from gym_openenv.framing import receive_frame, send_frame
from gym_openenv.protocol import BatchClose, BatchOpen, BatchReset, BatchStep, decode_msgpack, encode_msgpack
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.shm import TARGET_SLOTS
from tests.compare import pong_rollout, same

FAULTY = "tests.batch_fault_envs:FaultyEnvironment"
ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"


@pytest.fixture(scope="module")
def faulty_server():
    with LocalProcessProvider(FAULTY, server_args=["--step-timeout", "2", "--workers-per-client", "2"]) as server:
        yield server


def metadata(server) -> dict:
    return httpx.get(server.base_url + "/metadata", timeout=30).json()


def direct(server, **kwargs) -> DirectConnection:
    connection = connect_direct(metadata(server), server.base_url, **kwargs)
    assert connection is not None, "the server's direct socket is out of reach"
    return connection


def open_sessions(connection: DirectConnection, n: int) -> list[int]:
    return connection.call(BatchOpen.model_construct(n=n, shm=False, max_reply_bytes=None)).ids


def step(connection: DirectConnection, ids: list[int], commands: list[str]):
    return connection.call(BatchStep.model_construct(ids=ids, actions={"command": commands}, reset_ids=[], autoreset=False))


def test_the_socket_is_private_and_named_in_metadata(faulty_server):
    meta = metadata(faulty_server)
    mode = os.stat(meta["direct_socket"]).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert len(meta["server_id"]) == 16


def test_gym_make_and_make_vec_take_the_direct_socket_and_match_the_websocket():
    """Same seeds, same actions: the direct and WebSocket paths give identical Atari rollouts."""
    rollouts = {}
    for transport in (True, False):
        env = gym.make("openenv/atari-v0", game="pong", direct=transport)
        envs = gym.make_vec("openenv/atari-v0", num_envs=3, game="pong", direct=transport)
        try:
            assert isinstance(env.unwrapped._session, DirectSession) is transport
            assert envs.unwrapped._pool.in_callers_thread is transport
            rollouts[transport] = pong_rollout(env, envs, steps=40)
        finally:
            env.close()
            envs.close()
    assert same(rollouts[True], rollouts[False])


def test_gym_make_renders_into_its_slots_in_turns_frame_exact_with_ale_and_hands_out_its_own_copies():
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("openenv/atari-v0", game="pong")
    native = gym.make("ALE/Pong-v5")
    try:
        slots = env.unwrapped._session._slots
        assert slots is not None and slots.turns == TARGET_SLOTS  # one session: a slot for each of 8 turns
        kept = [(env.reset(seed=7)[0], native.reset(seed=7)[0])]
        rng = np.random.default_rng(1)
        for _ in range(3 * slots.turns + 1):  # every slot written more than once
            action = int(rng.integers(6))
            kept.append((env.step(action)[0], native.step(action)[0]))
        for ours, theirs in kept:  # each observation as it was: no later turn wrote over it
            np.testing.assert_array_equal(ours, theirs)
        assert len({id(ours) for ours, _ in kept}) == len(kept)
    finally:
        env.close()
        native.close()


def test_the_server_gives_a_block_the_turns_its_sessions_need_and_never_more_than_the_client_takes():
    with LocalProcessProvider("gym_openenv.servers.atari.server.environment:AtariEnvironment") as server:
        connection = direct(server)
        try:
            # (sessions, the most turns the client takes) -> turns: about TARGET_SLOTS slots a session in all
            for n, most, expected in [(1, 64, TARGET_SLOTS), (3, 64, 3), (4, 64, 2), (16, 64, 1), (1, 2, 2), (1, 1, 1)]:
                opened = connection.call(BatchOpen.model_construct(n=n, shm=True, max_reply_bytes=None, turns=most))
                os.close(opened.fd)
                assert (opened.shm["count"], opened.shm["turns"]) == (n, expected), (n, most)
            request = BatchOpen.model_construct(n=1, shm=True, max_reply_bytes=None)
            assert "turns" not in request.wire()  # a client that knows no turns sends none...
            opened = connection.call(request)
            os.close(opened.fd)
            assert opened.shm["turns"] == 1  # ...and reads one slot per session
        finally:
            connection.close_now()


def test_requests_queue_up_and_each_reply_goes_to_its_own_request(faulty_server):
    connection = direct(faulty_server)
    try:
        ids = open_sessions(connection, 2)
        connection.call(BatchReset.model_construct(ids=ids, seeds=None, options=None))
        first = connection.send(BatchStep.model_construct(ids=ids[:1], actions={"command": ["a"]}, reset_ids=[], autoreset=False))
        second = connection.send(BatchStep.model_construct(ids=ids[1:], actions={"command": ["b"]}, reset_ids=[], autoreset=False))
        assert connection.receive(second).observation["text"] == ["b"]  # read past the first, kept for it
        assert connection.receive(first).observation["text"] == ["a"]
    finally:
        connection.close_now()


def test_a_hung_call_is_replaced_and_the_rows_after_it_still_run(faulty_server):
    connection = direct(faulty_server, timeout=60)
    try:
        ids = open_sessions(connection, 3)
        connection.call(BatchReset.model_construct(ids=ids, seeds=None, options=None))
        reply = step(connection, ids, ["ok", "hang:5", "ok"])  # the server's step timeout: 2 s
        assert reply.observation["text"] == ["ok", None, "ok"]
        [error] = reply.errors
        assert error.row == 1 and error.episode_lost and "did not finish within 2" in error.message
        # The connection goes on, on another thread: the hung session has a new environment.
        connection.call(BatchReset.model_construct(ids=ids[1:2], seeds=None, options=None))
        again = step(connection, ids, ["a", "b", "c"])
        assert again.observation["text"] == ["a", "b", "c"] and again.observation["steps"] == [2, 1, 2]
    finally:
        connection.close_now()


def test_a_connection_whose_threads_all_hang_runs_no_more_rows(faulty_server):
    """workers_per_client=2: the stuck thread of one hang and the thread of a second hang
    are all the connection may have; the rows after that are not run, and say so."""
    connection = direct(faulty_server, timeout=60)
    try:
        ids = open_sessions(connection, 3)
        connection.call(BatchReset.model_construct(ids=ids, seeds=None, options=None))
        reply = step(connection, ids, ["hang:8", "hang:8", "ok"])
        assert [e.row for e in reply.errors] == [0, 1, 2]
        assert all(e.episode_lost for e in reply.errors[:2]) and "not run" in reply.errors[2].message
        time.sleep(7)  # the stuck threads return (their results are dropped): the connection has threads again
        connection.call(BatchReset.model_construct(ids=ids, seeds=None, options=None))
        assert step(connection, ids, ["a", "b", "c"]).observation["text"] == ["a", "b", "c"]
    finally:
        connection.close_now()


def test_a_hung_environment_is_closed_only_after_its_step_returns(tmp_path):
    log = tmp_path / "closes.log"
    with LocalProcessProvider("tests.envs:CloseWatchEnvironment", {"log": str(log)}, server_args=["--step-timeout", "1"]) as server:
        connection = direct(server)
        try:
            ids = open_sessions(connection, 2)
            connection.call(BatchReset.model_construct(ids=ids, seeds=None, options=None))
            reply = connection.call(BatchStep.model_construct(ids=ids, actions={"seconds": [3.0, 0.0]}, reset_ids=[], autoreset=False))
            assert [e.row for e in reply.errors] == [0] and reply.errors[0].episode_lost
            assert reply.observation["slept"][1] == 0.0
            deadline = time.monotonic() + 30
            while not log.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            connection.close_now()
    assert log.read_text().splitlines()[0] == "close"


def test_a_wrong_token_is_refused():
    with LocalProcessProvider(ECHO, env={"OPENENV_TOKEN": "right-token"}) as server:
        meta = httpx.get(server.base_url + "/metadata", headers={"Authorization": "Bearer right-token"}, timeout=30).json()
        with pytest.raises(Unauthorized):
            connect_direct(meta, server.base_url, token="wrong-token")
        with pytest.raises(Unauthorized):
            connect_direct(meta, server.base_url)
        connection = connect_direct(meta, server.base_url, token="right-token")
        assert connection is not None and connection.is_open
        connection.close_now()


def test_garbage_gets_error_replies_and_a_bad_stream_is_closed(faulty_server):
    path = metadata(faulty_server)["direct_socket"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        send_frame(sock, b"\xc1 not msgpack")  # no hello first: refused, and closed
        assert decode_msgpack(receive_frame(sock, 1 << 20))["data"]["code"] == "VALIDATION_ERROR"
        assert sock.recv(1) == b""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        send_frame(sock, encode_msgpack({"type": "hello", "seq": 0}))
        assert decode_msgpack(receive_frame(sock, 1 << 20))["type"] == "welcome"
        for garbage in (b"\xc1", encode_msgpack([1, 2]), encode_msgpack({"type": "step", "ids": "x", "seq": 7})):
            send_frame(sock, garbage)
            assert decode_msgpack(receive_frame(sock, 1 << 20))["type"] == "error"
        sock.sendall((2**31).to_bytes(4, "little"))  # a frame over the server's limit: the stream is not trusted after it
        assert sock.recv(1) == b""


def test_a_killed_server_is_restarted_and_reached_through_its_new_direct_socket():
    envs = gym.make_vec("openenv/echo-v0", num_envs=2, num_servers=1, timeout=30)
    try:
        assert envs.unwrapped._pool.in_callers_thread
        envs.reset()
        os.kill(envs.unwrapped._providers[0].pid, 9)
        obs, _, _, _, info = envs.step(("a", "b"))
        assert info["_openenv_restarted"].all() and obs == ("", "")  # new sessions: first observations
        obs, _, _, _, info = envs.step(("c", "d"))
        assert obs == ("c", "d") and "openenv_error" not in info
        assert envs.unwrapped._pool.in_callers_thread  # the new server's socket, not a WebSocket fallback
    finally:
        envs.close()


def test_a_direct_session_reports_a_failed_row_and_reconnects_at_reset(faulty_server):
    session = DirectSession(metadata(faulty_server), faulty_server.base_url, timeout=30)
    try:
        session.reset()
        with pytest.raises(ServerError, match="boom"):
            session.step({"command": "raise"})
        session._connection.close_now()  # dropped: a step cannot go on, a reset starts over
        with pytest.raises(ConnectionLost):
            session.step({"command": "ok"})
        session.reset()
        assert session.step({"command": "ok"})["observation"]["text"] == "ok"
    finally:
        session.close()


def test_a_stopping_server_closes_an_environment_only_after_its_running_step(tmp_path):
    log = tmp_path / "closes.log"
    server = LocalProcessProvider("tests.envs:CloseWatchEnvironment", {"log": str(log)})
    server.start()
    try:
        connection = direct(server)
        ids = open_sessions(connection, 1)
        connection.call(BatchReset.model_construct(ids=ids, seeds=None, options=None))
        connection.send(BatchStep.model_construct(ids=ids, actions={"seconds": [2.0]}, reset_ids=[], autoreset=False))
        time.sleep(0.5)  # the step is running on the connection's thread
    finally:
        server.stop()  # SIGTERM: the server shuts down with the step still running
    lines = log.read_text().splitlines()
    assert "close during step" not in lines and lines.count("close") == 2  # the startup probe's, the session's


def test_a_spinning_client_and_server_answer_the_same_and_a_bad_spin_is_refused(faulty_server):
    """Spinning (both sides polling instead of sleeping) changes when, never what."""
    quiet, spinning = direct(faulty_server), direct(faulty_server, spin=0.001, server_spin=0.001)
    try:
        for connection in (quiet, spinning):
            ids = open_sessions(connection, 2)
            connection.call(BatchReset.model_construct(ids=ids, seeds=[0, 1], options=None))
            replies = [step(connection, ids, ["ok", "ok"]) for _ in range(50)]
            assert [r.errors for r in replies] == [[]] * 50
            connection.result = [r.observation for r in replies]
        assert same(quiet.result, spinning.result)
    finally:
        quiet.close_now()
        spinning.close_now()
    path = metadata(faulty_server)["direct_socket"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        send_frame(sock, encode_msgpack({"type": "hello", "seq": 0, "spin": -1.0}))
        assert decode_msgpack(receive_frame(sock, 1 << 20))["data"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("policy, expected", [(None, os.SCHED_OTHER), ("batch", os.SCHED_BATCH), ("normal", os.SCHED_OTHER)])
def test_a_server_runs_its_threads_as_batch_work_when_told_so(policy, expected):
    args = [] if policy is None else ["--cpu-policy", policy]
    with LocalProcessProvider(ECHO, server_args=args) as server:
        env = gym.make("openenv/remote-v0", url=server.base_url)
        try:
            env.reset(seed=0)
            env.step("hi")  # the direct connection's thread exists now
            pid = server.pid
            policies = {int(t): os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}
        finally:
            env.close()
    assert policies[pid] == expected  # the main thread, and every thread started after it, inherit it
    assert sum(p != expected for p in policies.values()) <= 1  # one may predate main(), started by an import


def test_a_reply_to_another_request_or_none_at_all_closes_the_connection(tmp_path):
    """A peer speaking the direct protocol wrongly (no server of ours does): a reply echoing another
    request's seq is never passed on, nor is a late one; either closes the connection."""
    path = str(tmp_path / "peer.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    listener.settimeout(30)
    close = BatchClose.model_construct(ids=[])

    def answering(reply_seq):
        """A peer that greets, then answers each request with ``reply_seq(seq)`` (None: no reply)."""
        def run():
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(30)
                receive_frame(sock, 1 << 20)
                send_frame(sock, encode_msgpack({"type": "welcome", "server_id": "peer", "seq": 0}))
                try:
                    while True:
                        seq = decode_msgpack(receive_frame(sock, 1 << 20))["seq"]
                        if reply_seq(seq) is not None:
                            send_frame(sock, encode_msgpack({"type": "closed", "ids": [], "seq": reply_seq(seq)}))
                except (ConnectionError, OSError):
                    pass
        peer = threading.Thread(target=run, daemon=True)
        peer.start()
        return peer

    try:
        peer = answering(lambda seq: seq)
        connection = DirectConnection(path, "peer", timeout=30).connect()
        assert connection.call(close).seq == 1  # a conforming answer
        connection.close_now()
        peer.join(30)
        for queued in (False, True):  # the only request in flight; one after others
            peer = answering(lambda seq: seq + 1)
            connection = DirectConnection(path, "peer", timeout=30).connect()
            with pytest.raises(ConnectionLost, match="answered request"):
                if queued:
                    first = connection.send(close)
                    connection.call(close)
                    connection.receive(first)
                else:
                    connection.call(close)
            assert not connection.is_open
            with pytest.raises(ConnectionLost):
                connection.call(close)
            peer.join(30)
        peer = answering(lambda seq: None)
        connection = DirectConnection(path, "peer", timeout=0.2).connect()
        with pytest.raises(RequestTimeout):
            connection.call(close)
        assert not connection.is_open
        connection.close_now()
        peer.join(30)
    finally:
        listener.close()


def test_the_watchdog_fires_each_overdue_call_once_and_no_call_unwatched_in_time():
    # The watchdog takes no lock (a dict op per watch/unwatch, under the GIL): threads
    # watching and unwatching by the thousand beside its patrol must neither crash it
    # nor make it fire a call twice or fire one unwatched before its deadline.
    from gym_openenv.server.direct import _Watchdog

    watchdog = _Watchdog(interval=0.001)
    fired: list[int] = []
    overdue: list[int] = []

    def churn(k: int) -> None:
        for i in range(2000):
            name = k * 10_000 + i
            if i % 100 == 0:  # overdue at once: left watched, the patrol must fire it
                overdue.append(name)
                watchdog.watch(0.0, lambda name=name: fired.append(name))
            else:
                watchdog.unwatch(watchdog.watch(60.0, lambda name=name: fired.append(name)))

    try:
        threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        deadline = time.monotonic() + 60
        while len(fired) < len(overdue) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # a few more patrols: nothing fires twice
        assert sorted(fired) == sorted(overdue)
        assert not watchdog._watched
    finally:
        watchdog.stop()
