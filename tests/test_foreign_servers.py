"""Servers built by OpenEnv's own code (openenv-core), driven through
gym.make("openenv/remote-v0", url=...) and make_vec, with spaces from their /schema:

* the environment `openenv init` generates (its template, unmodified but for the
  session limit its comment tells users to raise);
* tests/upstream_style/: environments written the way upstream writes them
  (pydantic models with every JSON-schema shape, sparse reset observations, a
  plain-int action with legal actions), each a real uvicorn process, through
  remote-v0, check_env, make_vec(4) and sampled actions.
"""

import json
import os
import socket
import warnings
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import httpx
import numpy as np
import pytest
from gymnasium import spaces

from gymnasium.utils.env_checker import check_env

from gym_openenv import CapacityReached
from gym_openenv.providers.remote import RemoteProvider

UPSTREAM_STYLE = Path(__file__).resolve().parent / "upstream_style"

def serve(app: str, cwd: Path, *uvicorn_args: str) -> tuple[str, subprocess.Popen]:
    """Run an ASGI app with uvicorn, as OpenEnv's docs do; its URL once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *uvicorn_args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass  # not up yet
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited:\n{process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{app} did not answer /health")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def template_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("openenv_init")
    subprocess.run(["openenv", "init", "foreign_echo"], cwd=root, check=True, capture_output=True, timeout=120)
    app_py = root / "foreign_echo" / "server" / "app.py"
    # The template's own comment: "increase this number to allow more concurrent WebSocket sessions".
    app_py.write_text(app_py.read_text().replace("max_concurrent_envs=1", "max_concurrent_envs=8"))
    url, process = serve("server.app:app", root / "foreign_echo")
    yield url
    stop(process)


def test_openenv_template_through_gym_make(template_server):
    env = gym.make("openenv/remote-v0", provider=RemoteProvider(template_server))
    try:
        assert isinstance(env.action_space, spaces.Text)
        assert set(env.observation_space.spaces) == {"echoed_message", "message_length"}
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step("foreign")
        assert obs["echoed_message"] == "foreign" and obs["message_length"] == 7
        assert reward == pytest.approx(0.7) and not terminated and not truncated
    finally:
        env.close()


def test_openenv_template_through_make_vec(template_server):
    envs = gym.make_vec("openenv/remote-v0", url=template_server, num_envs=3)
    try:
        assert not envs.unwrapped.batched  # plain OpenEnv sessions, one per env
        envs.reset(seed=0)
        obs, reward, *_ = envs.step(np.array(["x", "yy", "zzz"]))
        assert list(obs["echoed_message"]) == ["x", "yy", "zzz"] and obs["message_length"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(reward, [0.1, 0.2, 0.3])
    finally:
        envs.close()


@pytest.fixture(scope="module")
def one_session_template_server(tmp_path_factory):
    """The template as `openenv init` writes it: max_concurrent_envs=1."""
    root = tmp_path_factory.mktemp("openenv_init_one_session")
    subprocess.run(["openenv", "init", "foreign_echo"], cwd=root, check=True, capture_output=True, timeout=120)
    assert "max_concurrent_envs=1" in (root / "foreign_echo" / "server" / "app.py").read_text()
    url, process = serve("server.app:app", root / "foreign_echo")
    yield url
    stop(process)


def test_openenv_session_limit_is_capacity_reached_through_make_vec(one_session_template_server):
    # openenv-core refuses the second session with a CAPACITY_REACHED frame and closes
    # the socket: the user must get that reply, not a lost connection.
    envs = gym.make_vec("openenv/remote-v0", url=one_session_template_server, num_envs=2)
    try:
        with pytest.raises(CapacityReached, match="[Cc]apacity|max") as caught:
            envs.reset(seed=0)
        assert caught.value.details.get("max_sessions") == 1
    finally:
        envs.close()
    env = gym.make("openenv/remote-v0", url=one_session_template_server)  # the one slot is free again
    try:
        env.reset(seed=0)
        assert env.step("one")[0]["echoed_message"] == "one"
    finally:
        env.close()


# --- upstream-style servers: every schema shape --------------------------------


@pytest.fixture(scope="module")
def shapes_server():
    url, process = serve("shapes_env:app", UPSTREAM_STYLE)
    yield url
    stop(process)


@pytest.fixture(scope="module")
def pick_server():
    url, process = serve("pick_env:app", UPSTREAM_STYLE)
    yield url
    stop(process)


@pytest.fixture(scope="module")
def deterministic_server():
    url, process = serve("declared_deterministic:app", UPSTREAM_STYLE)
    yield url
    stop(process)


def sampled_steps(env, n: int = 20) -> int:
    """``n`` steps of ``action_space.sample()``; each must be accepted (a refusal raises)."""
    env.action_space.seed(0)
    for _ in range(n):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            env.reset()
    return n


def test_every_schema_shape_through_remote_v0(shapes_server):
    required = httpx.get(f"{shapes_server}/schema").json()["action"]["required"]
    env = gym.make("openenv/remote-v0", url=shapes_server)
    try:
        assert set(env.action_space.spaces) == set(required)
        assert env.spec.nondeterministic  # reset ignores the seed: remote-v0 does not claim otherwise
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert set(info["missing_fields"]) == set(env.observation_space.spaces)  # a bare Observation
        assert sampled_steps(env) == 20
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's advice on unbounded Boxes
            check_env(env.unwrapped)
    finally:
        env.close()


def test_every_schema_shape_through_make_vec(shapes_server):
    envs = gym.make_vec("openenv/remote-v0", url=shapes_server, num_envs=4)
    try:
        obs, info = envs.reset(seed=0)
        assert envs.observation_space.contains(obs) and info["_missing_fields"].all()
        envs.action_space.seed(0)
        for _ in range(20):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert envs.observation_space.contains(obs)
            assert reward.shape == (4,) and (reward >= 1).all()  # reward = steps, in 1..3
    finally:
        envs.close()


def test_plain_int_action_with_an_action_space_and_legal_action_mask(pick_server):
    env = gym.make("openenv/remote-v0", url=pick_server, action_space=spaces.Discrete(5))
    try:
        obs, info = env.reset(seed=3)
        assert env.action_space == spaces.Discrete(5)
        np.testing.assert_array_equal(np.flatnonzero(info["action_mask"]), obs["legal_actions"])
        for _ in range(5):  # only legal moves: each fills a slot
            if not info["action_mask"].any():
                break
            obs, reward, terminated, _, info = env.step(env.action_space.sample(mask=info["action_mask"]))
            assert reward == 1.0
        assert sampled_steps(env) == 20
        check_env(env.unwrapped)  # seeded and deterministic, but remote-v0 is not told so
    finally:
        env.close()


def test_plain_int_action_through_make_vec(pick_server):
    envs = gym.make_vec("openenv/remote-v0", url=pick_server, num_envs=4, action_space=spaces.Discrete(5))
    try:
        obs, info = envs.reset(seed=0)
        assert info["action_mask"].shape == (4, 5) and info["action_mask"].dtype == np.int8
        for row in range(4):
            np.testing.assert_array_equal(np.flatnonzero(info["action_mask"][row]), obs["legal_actions"][row])
        for _ in range(20):
            envs.step(envs.action_space.sample())
    finally:
        envs.close()


def test_spaces_that_disagree_with_the_schema_are_refused(pick_server):
    with pytest.raises(ValueError, match=r"PickAction.slot: Text.* a Text space needs a string, not integer"):
        gym.make("openenv/remote-v0", url=pick_server, action_space=spaces.Text(4))
    with pytest.raises(ValueError, match="pass a dict"):
        gym.make("openenv/remote-v0", url=pick_server, observation_space=spaces.Box(0, 1, (5,), np.int64))
    env = gym.make("openenv/remote-v0", url=pick_server, observation_space={"slots": spaces.Box(0, 1, (5,), np.int64)})
    try:
        obs, info = env.reset(seed=0)
        assert obs.shape == (5,) and info["legal_actions"] == np.flatnonzero(obs == 0).tolist()
    finally:
        env.close()


def test_a_server_that_declares_itself_deterministic_is_checked_as_such(deterministic_server):
    env = gym.make("openenv/remote-v0", url=deterministic_server)
    try:
        assert env.spec.nondeterministic is False
        check_env(env.unwrapped)
    finally:
        env.close()
