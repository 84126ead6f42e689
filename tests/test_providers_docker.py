"""The docker provider against a real Docker engine (started by scripts/docker-setup.sh):
images built from gym_openenv/servers/<name>/server/Dockerfile, containers on loopback ports,
direct sockets in private folders mounted at the same path, none left behind."""

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import httpx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from gym_openenv.client import AsyncSession
from gym_openenv.direct import DirectSession
from gym_openenv.errors import ServerStartError, Unauthorized
from gym_openenv.providers import make_provider
from gym_openenv.providers.docker import (
    DIRECT_FOLDER_LABEL,
    OWNER_LABEL,
    DockerProvider,
    build_image,
    docker_client,
    dockerfile_for,
    from_docker_image,
    remove_orphans,
)
from tests.compare import pong_rollout, same
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


def assert_same_play(env, reference, seed: int, rounds: int) -> None:
    """``env`` and ``reference`` give the same frames, rewards and flags from ``seed`` on."""
    np.testing.assert_array_equal(env.reset(seed=seed)[0], reference.reset(seed=seed)[0])
    for action in [1, 2, 3, 0, 4, 5] * rounds:
        got, expected = env.step(action), reference.step(action)
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1:4] == expected[1:4]


def test_atari_pong_in_a_container_matches_the_local_server(engine):
    docker_env = gym.make("openenv/atari-v0", provider="docker", game="pong")
    local_env = gym.make("openenv/atari-v0", game="pong")
    try:
        assert docker_env.action_space == gym.spaces.Discrete(6)
        assert docker_env.observation_space == local_env.observation_space
        assert_same_play(docker_env, local_env, seed=3, rounds=3)
    finally:
        docker_env.close()
        local_env.close()
    assert our_containers(engine) == []


def metadata(url: str) -> dict:
    return httpx.get(url + "/metadata", timeout=30).json()


def test_clients_here_reach_a_container_over_its_direct_socket_with_the_same_frames(engine):
    """gym.make and make_vec on a docker server take its direct socket, where the server's
    shared block comes with the descriptor passed over the socket (no /proc lookup across the
    pid namespace), and their Atari rollouts are the WebSocket's (``direct=False``, frames in
    the messages), frame for frame."""
    with DockerProvider(ATARI, {"game": "pong"}) as provider:
        url = provider.base_url
        path = metadata(url)["direct_socket"]
        folder = os.path.dirname(path)
        mounts = provider.container.attrs["Mounts"]
        assert [(m["Source"], m["Destination"]) for m in mounts] == [(folder, folder)]  # the same path inside and out
        assert provider.container.labels[DIRECT_FOLDER_LABEL] == folder
        folder_stat, socket_stat = os.stat(folder), os.stat(path)
        assert stat.S_IMODE(folder_stat.st_mode) == 0o700 and folder_stat.st_uid == os.getuid()
        assert stat.S_ISSOCK(socket_stat.st_mode) and stat.S_IMODE(socket_stat.st_mode) == 0o600 and socket_stat.st_uid == os.getuid()
        rollouts = {}
        for transport in (True, False):
            env = gym.make("openenv/atari-v0", url=url, direct=transport)
            envs = gym.make_vec("openenv/atari-v0", num_envs=2, url=url, direct=transport)
            try:
                assert isinstance(env.unwrapped._session, DirectSession) is transport
                assert envs.unwrapped._pool.in_callers_thread is transport
                if transport:  # the block is mapped on the direct path; over the WebSocket it is declined
                    assert env.unwrapped._session._slots is not None
                    assert [server.slots is not None for server in envs.unwrapped._pool.servers] == [True]
                rollouts[transport] = pong_rollout(env, envs, steps=30)
            finally:
                env.close()
                envs.close()
    assert same(rollouts[True], rollouts[False])
    assert not os.path.exists(folder)
    assert our_containers(engine) == []


def test_shared_memory_crosses_into_a_container_that_shares_the_host_pid_namespace(engine):
    """Over the WebSocket (no descriptor passing), with ``pid_mode="host"`` the pid in the server's
    block description is this machine's, so the client maps the block; frames match a local server."""
    docker_env = gym.make(
        "openenv/atari-v0", provider="docker", game="pong", direct=False, provider_options={"run_options": {"pid_mode": "host"}}
    )
    local_env = gym.make("openenv/atari-v0", game="pong")
    try:
        session = docker_env.unwrapped._session
        assert not isinstance(session, DirectSession) and session._slots is not None
        assert session._slots.pid == docker_env.unwrapped._provider.container.attrs["State"]["Pid"]
        assert_same_play(docker_env, local_env, seed=4, rounds=2)
    finally:
        docker_env.close()
        local_env.close()
    assert our_containers(engine) == []


def test_a_server_that_cannot_make_its_socket_in_the_folder_serves_over_the_websocket(engine, echo_image):
    """The container's user may not write the mounted folder (here: nobody, in root's 0700 folder; a
    user-mapping engine likewise): the server starts without a direct socket and clients use /ws/batch."""
    if os.getuid() == 65534:
        pytest.skip("the folder would be the container user's own")
    with DockerProvider(image=echo_image, run_options={"user": "65534:65534"}) as provider:
        assert "direct_socket" not in metadata(provider.base_url)
        assert "no direct socket" in provider.logs()
        env = gym.make("openenv/remote-v0", url=provider.base_url)
        try:
            assert not isinstance(env.unwrapped._session, DirectSession)
            env.reset()
            assert env.step("over the websocket")[0] == "over the websocket"
        finally:
            env.close()
    assert our_containers(engine) == []


# Run as root, then as nobody in the docker group (a user of a rootful engine): the container's
# root creates the socket, the provider hands it to the user. The interpreter may live where
# nobody cannot read (/root/.pyenv): the first run, as root, imports every module the second needs.
_AS_ANOTHER_USER = textwrap.dedent(
    """
    import grp, os, stat, sys
    import certifi, gymnasium as gym, httpx, gym_openenv
    from gym_openenv.direct import DirectSession
    from gym_openenv.providers.docker import from_docker_image

    def run():  # the image is built already: nobody may not be able to read the checkout
        url, provider = from_docker_image(sys.argv[1])
        env = gym.make("openenv/remote-v0", url=url)
        try:
            path = httpx.get(url + "/metadata", timeout=30).json()["direct_socket"]
            st = os.stat(path)
            assert isinstance(env.unwrapped._session, DirectSession), env.unwrapped._session
            env.reset(seed=0)
            assert env.step("hello")[0] == "hello"
        finally:
            env.close()
            provider.stop()
        print(os.getuid(), oct(stat.S_IMODE(st.st_mode)), st.st_uid, os.path.exists(os.path.dirname(path)), flush=True)

    run()
    certificates = open(certifi.where(), "rb").read()
    os.setgroups([grp.getgrnam("docker").gr_gid])
    os.setgid(65534)
    os.setuid(65534)
    os.chdir("/tmp")
    readable = "/tmp/gym-openenv-test-ca-%d.pem" % os.getpid()
    with open(readable, "wb") as f:
        f.write(certificates)
    os.environ["SSL_CERT_FILE"] = readable  # httpx reads its CA bundle at every client
    try:
        run()
    finally:
        os.unlink(readable)
    """
)


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another user needs root")
def test_a_client_that_is_not_root_gets_the_socket_of_a_container_run_as_root(engine, echo_image):
    import grp

    try:
        grp.getgrnam("docker")
    except KeyError:
        pytest.skip("no docker group: the engine's socket is root's only")
    run = subprocess.run([sys.executable, "-c", _AS_ANOTHER_USER, echo_image], capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    # uid, socket mode, socket owner, folder left after close
    assert run.stdout.split("\n")[:2] == ["0 0o600 0 False", "65534 0o600 65534 False"]
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
        assert isinstance(env.unwrapped._session, DirectSession)  # the image's own CMD takes $OPENENV_DIRECT_SOCKET
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
        f"provider = DockerProvider(image={echo_image!r}); provider.start()\n"
        "print(provider._direct_folder, flush=True); time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        folder = child.stdout.readline().strip()
        assert os.path.exists(os.path.join(folder, "direct.sock"))
        orphans = engine.containers.list(filters={"label": f"{OWNER_LABEL}"})
        assert any(c.labels[OWNER_LABEL].endswith(f":{child.pid}") for c in orphans)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    removed = remove_orphans(engine)
    assert not os.path.exists(folder)  # its direct socket's folder went with it
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
