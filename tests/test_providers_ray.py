"""The ray provider on a local Ray cluster started here: one server per actor,
the vector env spreading sessions over them, every actor and server gone after close().
(tests/test_ray_elastic.py covers a multi-node cluster: lost and added nodes.)"""

import threading
import time

import gymnasium as gym
import httpx
import numpy as np
import psutil
import pytest
import ray

from gym_openenv.errors import ServerStartError
from gym_openenv.providers.ray import RayProvider

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster needs no token
        # address="local": a new cluster, even while another (a test's, a benchmark's) runs on this machine.
        ray.init(address="local", num_cpus=4, resources={"chromium_slot": 2}, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


def gone(pids: list[int], timeout: float = 20.0) -> bool:
    """Whether every pid has exited (Ray reaps killed actors' workers asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


def free_cpus_become(n: float, timeout: float = 20.0) -> bool:
    """Whether the cluster's free CPUs reach ``n`` (resource accounting lags actor starts and kills)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == pytest.approx(n):
            return True
        time.sleep(0.1)
    return False


def test_make_vec_spreads_sessions_over_actors_restarts_a_lost_one_and_leaves_nothing():
    # A free CPU is left, so the replacement is waited for (on a busy machine, for up to 60 s).
    envs = gym.make_vec("openenv/echo-v0", num_envs=6, provider="ray", num_servers=3, provider_options={"replacement_timeout": 60})
    try:
        placements = [p.placement for p in envs.unwrapped._providers]
        assert len({p["actor_pid"] for p in placements}) == 3 and len({p["url"] for p in placements}) == 3
        envs.reset(seed=0)
        messages = np.array(["a", "bb", "ccc", "dddd", "eeeee", "ffffff"])
        obs, reward, *_ = envs.step(messages)
        assert list(obs) == list(messages)
        np.testing.assert_allclose(reward, [0.1 * len(m) for m in messages])
        assert free_cpus_become(1)  # each actor holds one CPU
        ray.kill(envs.unwrapped._providers[0].actor, no_restart=True)  # an actor (its node) dies
        assert gone([placements[0]["server_pid"]])
        *_, info = envs.step(messages)
        assert info["openenv_restarted"].sum() == 2  # its two envs were reset on a new actor
        placements.append(envs.unwrapped._providers[0].placement)
        assert placements[-1]["actor_pid"] not in {p["actor_pid"] for p in placements[:3]}
    finally:
        envs.close()
    pids = [pid for p in placements for pid in (p["server_pid"], p["actor_pid"])]
    assert gone(pids)
    assert free_cpus_become(4)


def test_atari_pong_in_an_actor_matches_the_local_server():
    remote = gym.make("openenv/atari-v0", provider="ray", game="pong")
    local = gym.make("openenv/atari-v0", game="pong")
    try:
        placement = remote.unwrapped._provider.placement
        assert remote.action_space == gym.spaces.Discrete(6)
        np.testing.assert_array_equal(remote.reset(seed=2)[0], local.reset(seed=2)[0])
        for action in [3, 4, 1, 0, 2, 5] * 3:
            step_r, step_l = remote.step(action), local.step(action)
            np.testing.assert_array_equal(step_r[0], step_l[0])
            assert step_r[1:4] == step_l[1:4]
    finally:
        remote.close()
        local.close()
    assert gone([placement["server_pid"], placement["actor_pid"]])


def test_a_server_dies_with_its_actor_and_demands_our_token(monkeypatch):
    monkeypatch.setenv("OPENENV_TOKEN", "ray-token")
    provider = RayProvider(ECHO, num_cpus=0.5)
    url = provider.start()
    assert httpx.get(f"{url}/schema").status_code == 401
    assert httpx.get(f"{url}/schema", headers={"Authorization": "Bearer ray-token"}).status_code == 200
    server_pid = provider.placement["server_pid"]
    ray.kill(provider.actor, no_restart=True)  # as if its node went away
    assert gone([server_pid])  # the server watches the actor's pid
    provider.stop()  # the actor is gone already: stop() still succeeds


def test_an_actor_that_cannot_be_placed_is_a_clear_error_and_is_removed():
    provider = RayProvider(ECHO, resources={"no_such_node_type": 1}, startup_timeout=2)
    with pytest.raises(ServerStartError, match="no Ray actor started within 2"):
        provider.start()
    assert provider.actor is None


def test_servers_ask_for_what_they_need_and_several_fit_on_one_node():
    free = ray.available_resources()
    ask = {"num_cpus": 0.5, "memory": 64 * 2**20, "resources": {"chromium_slot": 1}}
    providers = [RayProvider(ECHO, **ask) for _ in range(2)]
    try:
        for provider in providers:
            provider.start()
        assert providers[0].placement["node_id"] == providers[1].placement["node_id"]
        deadline = time.monotonic() + 20  # resource accounting lags actor starts
        while ray.available_resources().get("chromium_slot", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        now = ray.available_resources()
        assert now["CPU"] == pytest.approx(free["CPU"] - 1)
        assert now["memory"] == pytest.approx(free["memory"] - 2 * 64 * 2**20)
        assert now.get("chromium_slot", 0) == 0
        # No token set: the servers demand one drawn for this process, and our clients send it.
        assert providers[0].token == providers[1].token
        assert httpx.get(f"{providers[0].base_url}/schema").status_code == 401
        headers = {"Authorization": f"Bearer {providers[0].token}"}
        assert httpx.get(f"{providers[0].base_url}/schema", headers=headers).status_code == 200
        third = RayProvider(ECHO, startup_timeout=2, **ask)
        with pytest.raises(ServerStartError, match="the actor asks for .*chromium_slot"):
            third.start()  # every slot is taken
    finally:
        for provider in providers:
            provider.stop()
    assert free_cpus_become(free["CPU"])


def test_stop_cancels_an_actor_still_waiting_for_room():
    provider = RayProvider(ECHO, resources={"no_such_node_type": 1}, startup_timeout=300)
    errors = []

    def start() -> None:
        try:
            provider.start()
        except ServerStartError as e:
            errors.append(e)

    starting = threading.Thread(target=start)
    starting.start()
    deadline = time.monotonic() + 60
    while provider.actor is None and time.monotonic() < deadline:
        time.sleep(0.05)
    provider.stop()
    starting.join(60)  # far less than the 300 s it would otherwise wait
    assert not starting.is_alive()
    assert "stopped before its Ray actor started" in str(errors[0])
    assert provider.actor is None
