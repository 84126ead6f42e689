"""Faults on the batch protocol against real server processes (issue 18: items 1, 2, 3, 5, 7).

Each test drives a real server (``python -m gym_openenv.server``) on loopback
with :class:`tests.batch_fault_envs.FaultyEnvironment`, whose sessions raise,
hang or answer with a large observation on command.
"""

import asyncio
import os
import stat
import time

import gymnasium as gym
import httpx
import msgpack
import numpy as np
import psutil
import pytest
from websockets.sync.client import connect

from gym_openenv import CapacityReached, RequestTimeout, ServerError
from gym_openenv.client import BatchConnection
from gym_openenv.errors import ConnectionLost
from gym_openenv.protocol import decode_msgpack, encode_msgpack
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.shm import ObservationSlots

FAULTY = "tests.batch_fault_envs:FaultyEnvironment"
ATARI = "gym_openenv.servers.atari.server.environment:AtariEnvironment"


@pytest.fixture(scope="module")
def faulty_server():
    with LocalProcessProvider(FAULTY, server_args=["--step-timeout", "2", "--max-sessions", "64"]) as server:
        yield server


def batch_socket(base_url: str):
    return connect(base_url.replace("http", "ws") + "/ws/batch", max_size=None)


def ask(ws, message: dict) -> dict:
    ws.send(encode_msgpack(message))
    return decode_msgpack(ws.recv(timeout=30))


# 18.1: a timed-out request never lends its reply to the next one


def test_a_timed_out_batch_connection_is_closed_not_reused(faulty_server):
    async def run():
        connection = BatchConnection(faulty_server.base_url, timeout=0.5)
        await connection.connect()
        ids = (await connection.open(2)).ids
        await connection.reset(ids)
        with pytest.raises(RequestTimeout):
            await connection.step(ids, {"command": ["hang:1.5", "ok"]})
        await asyncio.sleep(1.5)  # the late reply arrives meanwhile: it must not be read as the next one's
        with pytest.raises(ConnectionLost, match="closed"):
            await connection.reset(ids)
        await connection.close()

    asyncio.run(run())


def test_vector_env_recovers_from_a_client_timeout_with_exact_replies():
    with LocalProcessProvider(FAULTY, server_args=["--step-timeout", "60"]) as server:
        _recover_from_a_client_timeout(server.base_url)


def _recover_from_a_client_timeout(url: str) -> None:
    envs = gym.make_vec("openenv/remote-v0", num_envs=2, url=url, timeout=3.0)  # generous: the machine may be loaded
    try:
        envs.reset()
        obs, rewards, _, _, info = envs.step(["hang:8", "ok"])
        # Both envs' sessions were on the timed-out connection: new sessions, new episodes, flagged.
        assert info["_openenv_error"].all() and "no reply" in info["openenv_error"][0]
        assert obs == ("", "") and not rewards.any()
        for step in (1, 2, 3):  # every later reply answers its own request
            obs, _, _, _, info = envs.step(["ok", f"ok{step}"])
            assert obs == ("ok", f"ok{step}") and info["steps"].tolist() == [step, step]
        assert envs.reset()[0] == ("", "")
    finally:
        envs.close()


# 18.2: one environment raising fails its own row only


def test_one_failing_env_costs_the_others_nothing(faulty_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=4, url=faulty_server.base_url)
    try:
        envs.reset()
        obs, rewards, terminated, truncated, info = envs.step(["ok", "raise", "ok", "ok"])
        assert obs == ("ok", "", "ok", "ok")  # env 1 starts over: its reset observation
        assert rewards.tolist() == [1.0, 0.0, 1.0, 1.0] and not (terminated | truncated).any()
        assert info["_openenv_error"].tolist() == [False, True, False, False]
        assert "RuntimeError: boom at step 1" in info["openenv_error"][1]
        obs, _, _, _, info = envs.step(["a", "b", "c", "d"])
        # The healthy envs' step counts are exact (the failed env's episode restarted).
        assert obs == ("a", "b", "c", "d") and info["steps"].tolist() == [2, 1, 2, 2]
        assert "openenv_error" not in info
    finally:
        envs.close()


def test_failing_rows_arrive_as_row_errors_on_the_wire(faulty_server):
    with batch_socket(faulty_server.base_url) as ws:
        ids = ask(ws, {"type": "open", "n": 3, "seq": 1})["ids"]
        ask(ws, {"type": "reset", "ids": ids, "seq": 2})
        reply = ask(ws, {"type": "step", "ids": ids, "actions": {"command": ["ok", "raise", "ok"]}, "seq": 3})
        assert reply["type"] == "batch" and reply["seq"] == 3
        assert reply["observation"]["text"] == ["ok", None, "ok"]
        assert [(e[0], e[1]) for e in reply["errors"]] == [(1, "EXECUTION_ERROR")]
        ask(ws, {"type": "close", "ids": ids})


# 18.3: a hung step replaces its own session, not the others'


def test_a_hung_step_is_replaced_and_the_batch_goes_on(faulty_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=3, url=faulty_server.base_url, timeout=30)
    try:
        envs.reset()
        obs, _, _, _, info = envs.step(["ok", "hang:6", "ok"])  # server step timeout: 2 s
        assert obs == ("ok", "", "ok")
        assert info["_openenv_error"].tolist() == [False, True, False]
        assert "did not finish within 2" in info["openenv_error"][1]
        obs, _, _, _, info = envs.step(["a", "b", "c"])
        assert obs == ("a", "b", "c") and info["steps"].tolist() == [2, 1, 2]
        assert envs.reset()[0] == ("", "", "")  # no session is left broken
    finally:
        envs.close()


# 18.5: the server creates the shared block; a client can neither name nor shrink it


def test_the_server_never_opens_a_file_a_client_names(faulty_server, tmp_path):
    victim = f"/dev/shm/gym-openenv-test-victim-{os.getpid()}"
    with open(victim, "wb") as f:
        f.write(b"precious" * 1000)
    os.chmod(victim, stat.S_IRUSR | stat.S_IWUSR)
    try:
        with batch_socket(faulty_server.base_url) as ws:
            reply = ask(ws, {"type": "open", "n": 1, "shm": {"name": os.path.basename(victim), "count": 1, "fields": {"x": ["|u1", [8000]]}}})
            assert reply["type"] == "error" and reply["data"]["code"] == "VALIDATION_ERROR"
            reply = ask(ws, {"type": "open", "n": 1, "shm": {"fields": 5}})  # used to drop the connection
            assert reply["data"]["code"] == "VALIDATION_ERROR"
            assert ask(ws, {"type": "open", "n": 1})["type"] == "opened"
        with open(victim, "rb") as f:
            assert f.read() == b"precious" * 1000
    finally:
        os.unlink(victim)


def test_a_client_cannot_shrink_the_block_under_the_server():
    with LocalProcessProvider(ATARI, server_args=["--max-sessions", "8"]) as server:
        with batch_socket(server.base_url) as ws:
            opened = ask(ws, {"type": "open", "n": 2, "shm": True})
            block = opened["shm"]
            assert "name" not in block and block["pid"] == server.pid
            slots = ObservationSlots.open(block)
            fd = os.open(f"/proc/{block['pid']}/fd/{block['fd']}", os.O_RDWR)
            try:
                with pytest.raises(PermissionError):
                    os.ftruncate(fd, 0)  # what crashed the server with SIGBUS before
            finally:
                os.close(fd)
            ids = opened["ids"]
            ask(ws, {"type": "reset", "ids": ids, "seeds": [0, 1]})
            reply = ask(ws, {"type": "step", "ids": ids, "actions": {"action_id": [0, 1]}})
            assert reply["type"] == "batch" and reply["shm"] == ["screen"] and reply["observation"]["screen"] == [None, None]
            assert slots.views["screen"][:2].any()  # the frames are in the block
            slots.close()
        assert server.health() and psutil.Process(server.pid).is_running()
        assert not [p for p in os.listdir("/dev/shm") if "gym-openenv" in p and str(server.pid) in p]


def test_a_block_description_naming_anything_but_a_block_of_ours_is_refused_unopened():
    """A container's server reports its pid inside the container (1): here that is another
    process, whose descriptors (a pipe, a terminal, a device) must not be opened."""
    read_end, write_end = os.pipe()
    try:
        description = {"pid": os.getpid(), "fd": read_end, "token": b"x" * 16, "count": 1, "fields": {"screen": ["|u1", [210, 160, 3]]}}
        with pytest.raises(ValueError, match="is not a gym_openenv shared block"):
            ObservationSlots.open(description)
        own = ObservationSlots.create({"screen": ("|u1", (210, 160, 3))}, 1)
        try:  # a real block of ours, with the wrong token: opened, then refused
            with pytest.raises(ValueError, match="token mismatch"):
                ObservationSlots.open({**own.describe(), "token": b"y" * 16})
            ObservationSlots.open(own.describe()).close()
        finally:
            own.close()
    finally:
        os.close(read_end)
        os.close(write_end)


# 18.7: malformed frames get an error reply; oversize replies are reported as such


def test_malformed_batch_frames_get_error_replies(faulty_server):
    with batch_socket(faulty_server.base_url) as ws:
        deep = b"\x91" * 200_000 + b"\xc0"  # a list nested 200,000 deep
        for frame, code in [
            (deep, "INVALID_JSON"),
            (b"\xc1garbage", "INVALID_JSON"),
            (msgpack.packb({"type": "open", "n": "many", "seq": 7}), "VALIDATION_ERROR"),
            (msgpack.packb({"type": "reset", "ids": [0], "seeds": [-5]}), "VALIDATION_ERROR"),
            (msgpack.packb({"type": "step", "ids": [99], "actions": {}}), "SESSION_ERROR"),
        ]:
            ws.send(frame)
            reply = decode_msgpack(ws.recv(timeout=30))
            assert reply["type"] == "error" and reply["data"]["code"] == code, reply
        assert ask(ws, {"type": "open", "n": 1, "seq": 8}) == {"type": "opened", "ids": [0], "shm": None, "seq": 8}


def test_only_an_int_seq_in_range_is_echoed(faulty_server):
    # A bool is an int to isinstance(), but no request number; nor is a float, a string,
    # or an int that does not fit the client's uint64-free range.
    with batch_socket(faulty_server.base_url) as ws:
        for seq, echoed in [(True, None), (-1, None), (2**63, None), (1.0, None), ("3", None), (None, None), (0, 0), (2**63 - 1, 2**63 - 1)]:
            reply = ask(ws, {"type": "close", "ids": [], "seq": seq})
            assert reply.get("seq") == echoed and type(reply.get("seq")) is type(echoed), (seq, reply)


def test_a_reply_over_the_clients_limit_is_reported_not_a_lost_connection(faulty_server):
    async def run():
        connection = BatchConnection(faulty_server.base_url, max_message_bytes=64 * 1024)
        await connection.connect()
        ids = (await connection.open(2)).ids
        await connection.reset(ids)
        with pytest.raises(ServerError, match="MESSAGE_TOO_LARGE.*over the client's limit"):
            await connection.step(ids, {"command": ["big:100000", "ok"]})
        reply = await connection.step(ids, {"command": ["ok", "ok"]})  # the connection is fine
        assert reply.observation["text"] == ["ok", "ok"] and reply.observation["steps"] == [2, 2]
        await connection.close()

    asyncio.run(run())
    assert httpx.get(faulty_server.base_url + "/health").status_code == 200


def test_a_hung_environment_is_closed_only_after_its_step_returns(tmp_path):
    log = tmp_path / "closes.log"
    watch = "tests.envs:CloseWatchEnvironment"
    with LocalProcessProvider(watch, {"log": str(log)}, server_args=["--step-timeout", "1"]) as server:
        with batch_socket(server.base_url) as ws:
            ids = ask(ws, {"type": "open", "n": 2})["ids"]
            ask(ws, {"type": "reset", "ids": ids})
            reply = ask(ws, {"type": "step", "ids": ids, "actions": {"seconds": [3.0, 0.0]}})
            assert [e[0] for e in reply["errors"]] == [0] and reply["errors"][0][3]  # episode_lost
            assert reply["observation"]["slept"][1] == 0.0  # the row after the hung one still ran
            deadline = time.monotonic() + 30
            while not log.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        assert log.read_text().splitlines()[0] == "close"  # never "close during step"


def test_vector_env_reports_an_oversize_reply_without_restarting_the_server():
    envs = gym.make_vec("openenv/atari-v0", num_envs=1, game="pong", shared_memory=False, max_message_bytes=64 * 1024)
    try:
        pid = envs._providers[0].pid
        with pytest.raises(ServerError, match="MESSAGE_TOO_LARGE"):
            envs.reset(seed=0)  # a 100 KB frame in the reply, over the 64 KB limit
        assert envs._providers[0].pid == pid and psutil.pid_exists(pid)  # not taken for a dead server
    finally:
        envs.close()


def test_an_error_sent_before_the_server_closed_is_raised_not_connection_lost():
    # A batch server that refuses the connection the way OpenEnv's JSON servers refuse a
    # session: one error frame, then close. No server of ours does this on /ws/batch, so a
    # loopback websockets server stands in; the client must raise the error it was sent.
    from websockets.asyncio.server import serve

    async def refuse(ws):
        await ws.send(encode_msgpack({"type": "error", "data": {"code": "CAPACITY_REACHED", "message": "no room here"}}))
        await ws.close(1013)

    async def run():
        async with serve(refuse, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            connection = BatchConnection(f"http://127.0.0.1:{port}", timeout=30)
            await connection.connect()
            await asyncio.wait_for(connection._ws.wait_closed(), 30)  # the close is in before we ask
            with pytest.raises(CapacityReached, match="no room here"):
                await connection.open(1)
            with pytest.raises(ConnectionLost):  # and the connection is known to be gone
                await connection.open(1)

    asyncio.run(run())
