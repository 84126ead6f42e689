"""The docker provider against a real Docker engine (started by scripts/docker-setup.sh):
images built from gym_openenv/servers/<name>/server/Dockerfile, containers on loopback ports,
none left behind."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from gym_openenv.client import AsyncSession
from gym_openenv.errors import ServerStartError, Unauthorized
from gym_openenv.providers import make_provider
from gym_openenv.providers.docker import (
    OWNER_LABEL,
    DockerProvider,
    build_image,
    docker_client,
    dockerfile_for,
    from_docker_image,
    remove_orphans,
)
from tests.fixtures import docker_exports

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"
ATARI = "gym_openenv.servers.atari.server.environment:AtariEnvironment"


@pytest.fixture(scope="module")
def engine():
    """A Docker engine and the offline build settings, from the idempotent setup script."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in docker_exports().items():
            mp.setenv(key, value)
        yield docker_client()


def our_containers(client) -> list:
    return [c for c in client.containers.list(all=True, filters={"label": OWNER_LABEL}) if c.labels[OWNER_LABEL].endswith(f":{os.getpid()}")]


@pytest.fixture(scope="module")
def echo_image(engine):
    return build_image(dockerfile_for(ECHO), client=engine)


def test_echo_in_a_container_passes_check_env_and_leaves_nothing(engine, echo_image):
    env = gym.make("openenv/echo-v0", provider="docker")
    try:
        provider = env.unwrapped._provider
        assert isinstance(provider, DockerProvider) and provider.image.startswith("gym-openenv/echo:")
        assert env.unwrapped.base_url.startswith("http://127.0.0.1:")
        (container,) = our_containers(engine)
        assert container.attrs["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostIp"] == "127.0.0.1"
        check_env(env.unwrapped, skip_render_check=True)
        env.reset(seed=1)
        assert env.step("from docker")[:2] == ("from docker", pytest.approx(1.1))
    finally:
        env.close()
    assert our_containers(engine) == []


def test_a_token_protected_container_becomes_healthy_and_refuses_wrong_tokens(engine, echo_image, monkeypatch):
    monkeypatch.setenv("OPENENV_TOKEN", "docker-s3cret")
    env = gym.make("openenv/echo-v0", provider="docker")  # the health check must send the token
    try:
        env.reset()
        assert env.step("guarded")[0] == "guarded"
        base_url = env.unwrapped.base_url
        with pytest.raises(Unauthorized):
            gym.make("openenv/remote-v0", url=base_url, token="wrong")
        with pytest.raises(Unauthorized):
            asyncio.run(AsyncSession(base_url, token="wrong").connect())
    finally:
        env.close()
    assert our_containers(engine) == []


def test_atari_pong_in_a_container_matches_the_local_server(engine):
    docker_env = gym.make("openenv/atari-v0", provider="docker", game="pong")
    local_env = gym.make("openenv/atari-v0", game="pong")
    try:
        assert docker_env.action_space == gym.spaces.Discrete(6)
        assert docker_env.observation_space == local_env.observation_space
        obs_d, _ = docker_env.reset(seed=3)
        obs_l, _ = local_env.reset(seed=3)
        np.testing.assert_array_equal(obs_d, obs_l)
        for action in [1, 2, 3, 0, 4, 5] * 3:
            step_d, step_l = docker_env.step(action), local_env.step(action)
            np.testing.assert_array_equal(step_d[0], step_l[0])
            assert step_d[1:4] == step_l[1:4]
    finally:
        docker_env.close()
        local_env.close()
    assert our_containers(engine) == []


def test_make_vec_spreads_sessions_over_containers_and_restarts_a_dead_one(engine, echo_image):
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, provider="docker", num_servers=2)
    try:
        first, second = sorted(our_containers(engine), key=lambda c: c.attrs["Created"])
        envs.reset(seed=0)
        obs, reward, *_ = envs.step(np.array(["a", "bb", "ccc", "dddd"]))
        assert list(obs) == ["a", "bb", "ccc", "dddd"]
        np.testing.assert_allclose(reward, [0.1, 0.2, 0.3, 0.4])
        first.kill()  # the container dies under its sessions
        *_, info = envs.step(np.array(["e", "f", "g", "h"]))
        assert info["openenv_restarted"].sum() == 2  # that server's two envs were reset in a new container
        running = our_containers(engine)
        assert len(running) == 2 and second.id in {c.id for c in running} and first.id not in {c.id for c in running}
    finally:
        envs.close()
    assert our_containers(engine) == []


def test_env_var_picks_docker_and_server_args_reach_the_launcher(engine, echo_image, monkeypatch):
    monkeypatch.setenv("OPENENV_PROVIDER", "docker")
    env = gym.make("openenv/echo-v0", provider_options={"server_args": ["--max-sessions", "3"]})
    try:
        assert isinstance(env.unwrapped._provider, DockerProvider)
        (container,) = our_containers(engine)
        assert container.attrs["Config"]["Cmd"][-2:] == ["--max-sessions", "3"]
    finally:
        env.close()


def test_from_docker_image_runs_the_image_cmd(engine, echo_image):
    url, provider = from_docker_image(echo_image)
    try:
        env = gym.make("openenv/remote-v0", url=url)
        env.reset()
        assert env.step("image cmd")[0] == "image cmd"
        env.close()
    finally:
        provider.stop()
    provider.stop()  # idempotent
    assert our_containers(engine) == []


def test_a_server_that_fails_to_start_reports_its_logs_and_is_removed(engine):
    provider = make_provider("docker", ATARI, {"game": "no_such_game"}, startup_timeout=60)
    with pytest.raises(ServerStartError, match="no_such_game"):
        provider.start()
    assert our_containers(engine) == []


def test_containers_of_a_killed_process_are_removed_by_the_next_start(engine, echo_image):
    script = (
        "import sys, time\n"
        "from gym_openenv.providers.docker import DockerProvider\n"
        f"DockerProvider(image={echo_image!r}).start()\n"
        "print('up', flush=True); time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert child.stdout.readline().strip() == "up"
        orphans = engine.containers.list(filters={"label": f"{OWNER_LABEL}"})
        assert any(c.labels[OWNER_LABEL].endswith(f":{child.pid}") for c in orphans)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    removed = remove_orphans(engine)
    assert removed and not [c for c in engine.containers.list(all=True, filters={"label": OWNER_LABEL}) if c.labels[OWNER_LABEL].endswith(f":{child.pid}")]


def test_unchanged_context_reuses_the_image(engine):
    tag = build_image(dockerfile_for(ECHO), client=engine)  # builds only if the checkout changed meanwhile
    started = time.monotonic()
    assert build_image(dockerfile_for(ECHO), client=engine) == tag
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="no Dockerfile"):
        dockerfile_for("gym_openenv.server.environment:Environment")
    with pytest.raises(ValueError, match="gym_openenv/servers/<name>/server"):
        dockerfile_for("gym_openenv.inprocess:InProcessEnv")
