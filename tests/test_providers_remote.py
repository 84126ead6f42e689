"""The remote provider: a running server at a URL (loopback here; a Hugging Face
Space URL works the same), health retried with backoff, bearer token passed through."""

import re
import socket
import subprocess
import sys
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from gym_openenv.errors import ServerStartError, Unauthorized
from gym_openenv.providers import LocalProcessProvider, make_provider
from gym_openenv.providers.remote import RemoteProvider, hf_space_url

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"
ATARI = "gym_openenv.servers.atari.server.environment:AtariEnvironment"
TOKEN = "remote-test-token"


@pytest.fixture(scope="module")
def guarded_echo():
    """An echo server that wants a bearer token."""
    with LocalProcessProvider(ECHO, env={"OPENENV_TOKEN": TOKEN}) as provider:
        yield provider.base_url


@pytest.fixture(scope="module")
def atari_server():
    with LocalProcessProvider(ATARI, {"game": "pong"}) as provider:
        yield provider.base_url


def test_token_passes_through_to_a_guarded_server(guarded_echo):
    provider = RemoteProvider(guarded_echo, token=TOKEN)
    env = gym.make("openenv/remote-v0", provider=provider, token=TOKEN)
    try:
        env.reset()
        assert env.step("with token")[0] == "with token"
    finally:
        env.close()
    assert provider.base_url is None  # forgotten, not stopped: the server still answers
    assert RemoteProvider(guarded_echo, token=TOKEN).health()


def test_token_from_the_environment_variable(guarded_echo, monkeypatch):
    monkeypatch.setenv("OPENENV_TOKEN", TOKEN)
    env = gym.make("openenv/echo-v0", provider="remote", provider_options={"url": guarded_echo})
    try:
        assert isinstance(env.unwrapped._provider, RemoteProvider)
        env.reset()
        assert env.step("env token")[0] == "env token"
    finally:
        env.close()


def test_a_missing_token_is_a_clear_error(guarded_echo):
    with pytest.raises(Unauthorized, match="401|bearer token"):
        gym.make("openenv/remote-v0", url=guarded_echo, token=None)


def test_atari_through_a_remote_url_single_and_vector(atari_server):
    env = gym.make("openenv/remote-v0", provider=RemoteProvider(atari_server))
    envs = gym.make_vec("openenv/remote-v0", url=atari_server, num_envs=3)
    try:
        assert env.action_space == gym.spaces.Discrete(6)
        assert env.observation_space.shape == (210, 160, 3)
        obs, _ = env.reset(seed=11)
        batch, _ = envs.reset(seed=11)
        np.testing.assert_array_equal(batch[0], obs)  # env 0 gets seed 11
        for _ in range(5):
            obs, *_ = env.step(2)
            batch, *_ = envs.step(np.array([2, 2, 2]))
        np.testing.assert_array_equal(batch[0], obs)
    finally:
        env.close()
        envs.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_retries_with_backoff_until_the_server_is_up():
    port = free_port()
    server: list[subprocess.Popen] = []

    def start_late():
        time.sleep(1.0)
        server.append(subprocess.Popen([sys.executable, "-m", "gym_openenv.server", ECHO, "--port", str(port)], stdout=subprocess.DEVNULL))

    threading.Thread(target=start_late).start()
    provider = make_provider("remote", None, {}, url=f"http://127.0.0.1:{port}", connect_timeout=60, backoff=0.05)
    try:
        assert provider.start() == f"http://127.0.0.1:{port}"
        assert provider.attempts > 2
    finally:
        while not server:
            time.sleep(0.05)
        server[0].terminate()
        server[0].wait(10)


def test_an_unreachable_url_fails_after_its_connect_timeout():
    provider = RemoteProvider(f"http://127.0.0.1:{free_port()}", connect_timeout=0.5, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="did not become healthy within 0.5s") as failed:
        provider.start()
    attempts = int(re.search(r"\((\d+) attempts", str(failed.value)).group(1))
    assert time.monotonic() - started < 5 and attempts >= 2


def test_hugging_face_space_urls():
    assert hf_space_url("openenv/echo_env") == "https://openenv-echo-env.hf.space"
    assert hf_space_url("https://huggingface.co/spaces/Owner/My.Space") == "https://owner-my-space.hf.space"
    with pytest.raises(ValueError, match="owner/name"):
        hf_space_url("just-a-name")
    with pytest.raises(ValueError, match="http"):
        RemoteProvider("ftp://example.org")
    with pytest.raises(ValueError, match="needs url"):
        make_provider("remote", ECHO, {})
