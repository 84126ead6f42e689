"""gym.make("openenv/echo-v0") through real server processes."""

import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import gym_openenv
from gym_openenv.env import OpenEnvEnv
from tests.conftest import ECHO


def test_make_step_and_close_stops_the_server():
    env = gym.make("openenv/echo-v0")
    provider = env.unwrapped._provider
    assert provider.health()
    obs, info = env.reset(seed=1)
    assert obs == "" and info == {"message_length": 0}
    obs, reward, terminated, truncated, info = env.step("hello")
    assert (obs, reward, terminated, truncated) == ("hello", pytest.approx(0.5), False, False)
    assert info == {"message_length": 5, "step": 1}
    assert env.unwrapped.state()["step_count"] == 1
    pid = provider.pid
    env.close()
    assert provider.process is None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_check_env_passes():
    env = gym.make("openenv/echo-v0")
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_truncation_is_not_termination():
    env = gym.make("openenv/echo-v0", max_steps=2)
    try:
        env.reset()
        assert env.step("a")[2:4] == (False, False)
        assert env.step("b")[2:4] == (False, True)
    finally:
        env.close()


def test_action_outside_the_space_fails_before_sending(echo_server):
    env = gym.make("openenv/remote-v0", url=echo_server)
    try:
        env.reset()
        with pytest.raises(ValueError, match="EchoAction.message"):
            env.step(42)
        assert env.step("still fine")[0] == "still fine"
    finally:
        env.close()


def test_remote_drives_a_separately_started_server(echo_server):
    env = gym.make("openenv/remote-v0", url=echo_server)
    assert type(env.unwrapped._provider).__name__ == "RemoteProvider"  # stopping it stops nothing
    env.reset(seed=0)
    assert env.step("x")[0] == "x"
    env.close()


def test_unknown_names_suggest_close_ones():
    with pytest.raises(gym_openenv.UnknownEnvironment, match="Did you mean echo"):
        gym_openenv.registry.find("ecko")


def test_remote_without_url_is_a_clear_error():
    with pytest.raises(ValueError, match="url="):
        gym.make("openenv/remote-v0")


def test_a_server_that_cannot_start_says_why():
    with pytest.raises(gym_openenv.ServerStartError, match="max_steps must be >= 1") as err:
        OpenEnvEnv(ECHO, max_steps=0, provider_options={"startup_timeout": 30})
    assert "exited" in str(err.value) or "ValueError" in str(err.value)


def test_no_orphan_server_after_the_parent_is_killed():
    # A parent that starts a server, reports its pid, then dies by SIGKILL.
    code = (
        "import gymnasium as gym, gym_openenv, os, sys;"
        "env = gym.make('openenv/echo-v0');"
        "print(env.unwrapped._provider.pid, flush=True);"
        "os.kill(os.getpid(), 9)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    server_pid = int(out.stdout.split()[0])
    import time

    import psutil

    deadline = time.monotonic() + 10
    while psutil.pid_exists(server_pid) and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "server outlived its killed parent"
        time.sleep(0.1)
