"""gym.make_vec("openenv/echo-v0") through real server processes."""

import os
import signal

import gymnasium as gym
import numpy as np
import psutil
import pytest
from gymnasium.error import AlreadyPendingCallError, NoAsyncCallError
from gymnasium.vector import AutoresetMode
from gymnasium.vector.async_vector_env import AsyncState

from gym_openenv import CapacityReached, ConnectionLost
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.vector import OpenEnvVectorEnv
from tests.conftest import ECHO


def words(n, prefix="w"):
    return tuple(f"{prefix}{i}" for i in range(n))


@pytest.fixture
def envs():
    envs = gym.make_vec("openenv/echo-v0", num_envs=8, num_servers=2, max_steps=2)
    yield envs
    envs.close()


def test_make_vec_uses_the_batched_vector_env(envs):
    assert isinstance(envs, OpenEnvVectorEnv) and envs.batched
    assert len(envs._providers) == 2
    obs, info = envs.reset(seed=5)
    assert obs == ("",) * 8
    assert info["message_length"].tolist() == [0] * 8 and info["_message_length"].all()
    obs, rewards, terminated, truncated, info = envs.step(words(8))
    assert obs == words(8)
    np.testing.assert_allclose(rewards, [0.2] * 8)
    assert info["step"].tolist() == [1] * 8


def test_next_step_autoreset(envs):
    envs.reset(seed=0)
    envs.step(words(8))
    _, _, terminated, truncated, _ = envs.step(words(8, "x"))
    assert truncated.all() and not terminated.any()
    # The step after the end resets: first observation, no reward, not done; actions ignored.
    obs, rewards, terminated, truncated, info = envs.step(words(8, "ignored"))
    assert obs == ("",) * 8 and not rewards.any() and not (terminated | truncated).any()
    obs, _, _, _, info = envs.step(words(8, "y"))
    assert obs == words(8, "y") and info["step"].tolist() == [1] * 8


def test_same_step_autoreset():
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, num_servers=1, max_steps=2, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        envs.reset(seed=0)
        envs.step(words(4))
        obs, rewards, terminated, truncated, info = envs.step(words(4, "last"))
        assert truncated.all()
        assert obs == ("",) * 4  # already the next episode's first observation
        assert list(info["final_obs"]) == list(words(4, "last")) and info["_final_obs"].all()
        assert info["final_info"][0]["step"] == 2
        np.testing.assert_allclose(rewards, [0.5] * 4)
    finally:
        envs.close()


def test_same_step_env_moved_to_a_new_server_is_reset_once():
    # Every step ends every episode (max_steps=1). The env moved to the new server starts
    # over at its next step (flagged) while the other one's episode ends; after that it steps.
    envs = gym.make_vec("openenv/echo-v0", num_envs=2, num_servers=1, max_steps=1, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        envs.reset(seed=0)
        envs.add_servers(1)
        _, _, terminated, truncated, info = envs.step(words(2))
        moved = info["openenv_restarted"]
        assert moved.sum() == 1 and ((terminated | truncated) == ~moved).all()
        _, _, _, truncated, info = envs.step(words(2, "y"))
        assert truncated.all() and list(info["final_obs"]) == list(words(2, "y"))
    finally:
        envs.close()


def test_max_episode_steps_truncates_on_the_client():
    envs = gym.make_vec("openenv/echo-v0", num_envs=2, num_servers=1, max_episode_steps=3)
    try:
        envs.reset()
        flags = [envs.step(words(2))[3].tolist() for _ in range(3)]
        assert flags == [[False, False], [False, False], [True, True]]
    finally:
        envs.close()


def test_send_recv_partial_batches(envs):
    envs.reset(seed=1)
    envs.send(("a", "b"), env_ids=[0, 5])
    envs.send(("c",), env_ids=[3])
    with pytest.raises(ValueError, match="already have a step pending"):
        envs.send(("d",), env_ids=[5])
    obs, rewards, _, _, info = envs.recv()
    assert obs == ("a", "b") and info["env_id"].tolist() == [0, 5]
    obs, _, _, _, info = envs.recv()
    assert obs == ("c",) and info["env_id"].tolist() == [3]
    with pytest.raises(NoAsyncCallError, match="nothing sent"):
        envs.recv()


def test_env_ids_handed_out_or_passed_in_are_not_shared_with_the_env(envs):
    # recv's info["env_id"] is the caller's to change, and so is the array given to send.
    envs.reset(seed=1)
    envs.send(words(8))
    info = envs.recv()[4]
    info["env_id"][:] = 7
    ids = np.array([2, 4])
    envs.send(("a", "b"), env_ids=ids)
    ids[:] = 0
    obs, _, _, _, info = envs.recv()
    assert obs == ("a", "b") and info["env_id"].tolist() == [2, 4]
    envs.send(words(8))
    assert envs.recv()[4]["env_id"].tolist() == list(range(8))
    assert "env_id" not in envs.step(words(8))[4]


def test_episode_ends_with_pending_sends_and_partial_batches(envs):
    # max_steps=2: each env's second step ends its episode; its next send resets it.
    envs.reset(seed=0)
    envs.send(words(4), env_ids=[0, 1, 2, 3])
    envs.send(words(4, "b"), env_ids=[4, 5, 6, 7])
    envs.recv(), envs.recv()
    envs.send(words(2, "c"), env_ids=[1, 6])
    _, _, _, truncated, _ = envs.recv()
    assert truncated.tolist() == [True, True]
    obs, rewards, terminated, truncated, _ = envs.step(words(8, "d"))
    ended = [1, 6]
    assert [obs[i] for i in ended] == ["", ""] and not rewards[ended].any()  # reset, not stepped
    assert all(obs[i] == f"d{i}" for i in range(8) if i not in ended)
    assert truncated.tolist() == [i not in ended for i in range(8)] and not terminated.any()


def test_step_async_and_wait(envs):
    envs.reset()
    envs.step_async(words(8))
    assert envs._state is AsyncState.WAITING_STEP
    with pytest.raises(AlreadyPendingCallError, match="pending"):
        envs.step_async(words(8))
    with pytest.raises(AlreadyPendingCallError, match="pending"):
        envs.reset()
    assert envs.step_wait()[0] == words(8)
    assert envs._state is AsyncState.DEFAULT
    with pytest.raises(NoAsyncCallError, match="no step pending"):
        envs.step_wait()


def test_wrong_batches_fail_before_sending(envs):
    envs.reset()
    with pytest.raises(ValueError, match="expected 8 actions"):
        envs.step(words(3))
    with pytest.raises(ValueError, match="action 2"):
        envs.step(("a", "b", 3, "d", "e", "f", "g", "h"))
    assert envs.step(words(8))[0] == words(8)  # nothing was half-sent


def test_openenv_fallback_path(echo_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=3, url=echo_server, protocol="openenv")
    try:
        assert not envs.batched
        envs.reset(seed=2)
        obs, rewards, _, _, info = envs.step(("p", "q", "r"))
        assert obs == ("p", "q", "r") and info["message_length"].tolist() == [1, 1, 1]
    finally:
        envs.close()


def test_seeds_reach_each_env(echo_server):
    envs = gym.make_vec("openenv/remote-v0", num_envs=3, url=echo_server)
    try:
        with pytest.raises(ValueError, match="expected 3 seeds"):
            envs.reset(seed=[1, 2])
        envs.reset(seed=[1, None, 3])
    finally:
        envs.close()


def test_server_death_mid_step_is_a_clear_error_and_close_leaves_nothing():
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, num_servers=2, timeout=10, on_server_failure="raise")
    pids = [p.pid for p in envs._providers]
    envs.reset()
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(ConnectionLost):
        envs.step(words(4))
    envs.close()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_sb3_vecenv_interface():
    from gym_openenv.integrations.sb3 import SB3VecEnv

    venv = SB3VecEnv(gym.make_vec("openenv/echo-v0", num_envs=2, num_servers=1, max_steps=2, autoreset_mode=AutoresetMode.SAME_STEP))
    try:
        venv.seed(3)
        assert venv.reset() == ("", "")
        venv.step_async(("a", "b"))
        obs, rewards, dones, infos = venv.step_wait()
        assert not dones.any() and infos[0]["step"] == 1
        obs, rewards, dones, infos = venv.step(("c", "d"))
        assert dones.all() and obs == ("", "")
        assert infos[1]["terminal_observation"] == "d" and infos[1]["TimeLimit.truncated"]
        assert rewards.dtype == np.float32
    finally:
        venv.close()


def test_shared_memory_frames_equal_the_socket_path():
    before = set(os.listdir("/dev/shm"))
    kwargs = dict(num_envs=3, num_servers=1, game="pong")
    fast = gym.make_vec("openenv/atari-v0", **kwargs)
    plain = gym.make_vec("openenv/atari-v0", shared_memory=False, **kwargs)
    try:
        slots = fast._pool.servers[0].slots
        assert slots is not None and plain._pool.servers[0].slots is None
        assert slots.pid == fast._providers[0].pid  # the server made the block
        a, _ = fast.reset(seed=4)
        b, _ = plain.reset(seed=4)
        np.testing.assert_array_equal(a, b)
        rng = np.random.default_rng(0)
        for _ in range(30):
            actions = rng.integers(0, 6, 3)
            a, ra, *_ = fast.step(actions)
            b, rb, *_ = plain.step(actions)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ra, rb)
        a[:] = 0  # handed-out observations are the caller's own, not views of the block
        assert fast.step(np.zeros(3, dtype=np.int64))[0].any()
    finally:
        fast.close()
        plain.close()
    assert set(os.listdir("/dev/shm")) - before == set()  # a memfd leaves no file behind


def test_same_step_autoreset_keeps_final_frames_with_shared_memory():
    import ale_py

    gym.register_envs(ale_py)
    # 40 frames (10 steps) per episode: episodes end during the test.
    kwargs = dict(num_envs=2, num_servers=1, game="pong", max_num_frames_per_episode=40, autoreset_mode=AutoresetMode.SAME_STEP)
    fast = gym.make_vec("openenv/atari-v0", **kwargs)
    plain = gym.make_vec("openenv/atari-v0", shared_memory=False, **kwargs)
    native = gym.make_vec("ALE/Pong-v5", num_envs=2, vectorization_mode="sync", max_num_frames_per_episode=40, vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    try:
        assert fast._pool.servers[0].slots is not None
        a, _ = fast.reset(seed=3)
        b, _ = plain.reset(seed=3)
        c, _ = native.reset(seed=3)
        np.testing.assert_array_equal(a, c)
        ended = 0
        for step in range(25):
            actions = np.array([step % 6, (step * 5) % 6])
            a, _, ta, tra, ia = fast.step(actions)
            b, _, tb, trb, ib = plain.step(actions)
            c, _, tc, trc, ic = native.step(actions)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)  # frame-exact with ALE v5, autoreset included
            np.testing.assert_array_equal(tra, trc)
            if trc.any():
                ended += 1
                for i in np.flatnonzero(trc):
                    np.testing.assert_array_equal(ia["final_obs"][i], ic["final_obs"][i])
                    np.testing.assert_array_equal(ib["final_obs"][i], ic["final_obs"][i])
                    assert not np.array_equal(ia["final_obs"][i], a[i])  # the last frame, not the new first one
        assert ended >= 2
    finally:
        fast.close()
        plain.close()
        native.close()


@pytest.mark.parametrize("protocol", ["batch", "openenv"])
def test_a_full_server_says_capacity_reached_not_connection_lost(protocol):
    # --max-sessions 1 and two envs: the JSON server refuses the second session with an
    # error frame and closes the socket; that reply, not the closed socket, must reach the user.
    with LocalProcessProvider(ECHO, server_args=["--max-sessions", "1"]) as server:
        with pytest.raises(CapacityReached, match="1 in use|1 of 1 sessions in use") as caught:
            envs = gym.make_vec("openenv/remote-v0", num_envs=2, url=server.base_url, protocol=protocol)
            try:
                envs.reset(seed=0)  # the JSON protocol only hears of the refusal at its first call
            finally:
                envs.close()
        assert caught.value.code == "CAPACITY_REACHED"
        # The refused session's slot was never taken: one env still fits.
        with gym.make("openenv/remote-v0", url=server.base_url) as env:
            env.reset(seed=0)
