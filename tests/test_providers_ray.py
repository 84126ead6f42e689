"""The ray provider on a local Ray cluster started here: one server per actor,
the vector env spreading sessions over them, every actor and server gone after close()."""

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
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
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
    envs = gym.make_vec("openenv/echo-v0", num_envs=6, provider="ray", num_servers=3)
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
