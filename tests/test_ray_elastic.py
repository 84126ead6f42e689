"""Elastic make_vec on a 3-node Ray cluster simulated here (``ray.cluster_utils.Cluster``,
one CPU per node, every node on 127.0.0.2): servers spread over the nodes, a node removed
mid-rollout (its envs re-homed on the survivors, flagged, counters exact), a node added
(its replacement takes envs back), servers added and removed, and nothing left after close()."""

import time

import gymnasium as gym
import httpx
import numpy as np
import psutil
import pytest
import ray
from ray.cluster_utils import Cluster

from gym_openenv.elastic import _even_targets, _fill_evenly
from gym_openenv.errors import ServerStartError

NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.2", "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on loopback needs no token
        cluster = Cluster()
        try:
            cluster.add_node(**NODE, include_dashboard=False)
            for _ in range(2):
                cluster.add_node(**NODE)
            ray.init(address=cluster.address, log_to_driver=False)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def gone(pids: list[int], timeout: float = 30.0) -> bool:
    """Whether every pid has exited (Ray reaps killed actors' workers asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.2)
    return False


def free_cpus_become(n: float, timeout: float = 30.0) -> bool:
    """Whether the cluster's free CPUs reach ``n`` (resource accounting lags actor starts and kills)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == pytest.approx(n):
            return True
        time.sleep(0.2)
    return False


def sessions_on(envs) -> list[int]:
    """Active sessions each server in use reports (the servers' own count, not ours)."""
    headers = {"Authorization": f"Bearer {envs.unwrapped._pool.token}"}
    return [httpx.get(f"{url}/health", headers=headers, timeout=60).json()["active_sessions"] for url in envs.unwrapped._recovery.urls]


class Rollout:
    """Steps a vector echo env and checks every env's step counter against its own count."""

    def __init__(self, envs):
        self.envs = envs
        self.expected = np.zeros(envs.num_envs, dtype=np.int64)  # server-side steps of each env's episode
        self.restarts = np.zeros(envs.num_envs, dtype=np.int64)

    def step(self) -> np.ndarray:
        """One step of every env; returns which envs started over (flagged)."""
        n = self.envs.num_envs
        messages = np.array([f"m{i}" for i in range(n)])
        obs, reward, terminated, truncated, info = self.envs.step(messages)
        restarted = info.get("openenv_restarted", np.zeros(n, dtype=bool))
        assert len(obs) == n
        # A restarted env's row is the first observation of its new episode; the others echo.
        assert [o for o, r in zip(obs, restarted) if r] == [""] * int(restarted.sum())
        assert [o for o, r in zip(obs, restarted) if not r] == [m for m, r in zip(messages, restarted) if not r]
        self.expected = np.where(restarted, 0, self.expected + 1)
        steps = np.where(info.get("_step", np.zeros(n, dtype=bool)), info.get("step", 0), 0)
        np.testing.assert_array_equal(steps, self.expected)  # no step lost, none applied twice
        assert not (terminated | truncated).any()
        self.restarts += restarted
        return restarted

    def until(self, condition, timeout: float) -> np.ndarray:
        """Step until a step's flags satisfy ``condition``; returns those flags."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            restarted = self.step()
            if condition(restarted):
                return restarted
            time.sleep(0.05)
        raise AssertionError(f"no such step within {timeout}s")


def worker_node_of(cluster, node_id: str):
    """The worker node (not the head, which holds the cluster's state) with that id, or None."""
    return next((n for n in cluster.worker_nodes if n.node_id == node_id), None)


def test_envs_go_to_the_least_loaded_servers_within_their_free_slots():
    plan = _fill_evenly(np.arange(6), load={"a": 4, "b": 2, "c": 5}, room={"a": 10, "b": 1, "c": 10})
    assert {url: envs.tolist() for url, envs in plan.items()} == {"b": [0], "a": [1, 2, 4], "c": [3, 5]}
    assert _fill_evenly(np.arange(3), load={"a": 0, "b": 0}, room={"a": 2, "b": 0}) is None  # nowhere for the third
    assert _even_targets(10, ["a", "b", "c"]) == {"a": 4, "b": 3, "c": 3}


def test_a_lost_node_is_rehomed_at_once_and_a_new_node_takes_envs_back(cluster):
    envs = gym.make_vec("openenv/echo-v0", num_envs=12, provider="ray", num_servers=3, provider_options={"num_cpus": 1})
    pids = []
    try:
        providers = list(envs.unwrapped._providers)
        placements = [dict(p.placement) for p in providers]
        pids += [pid for p in placements for pid in (p["server_pid"], p["actor_pid"])]
        assert len({p["node_id"] for p in placements}) == 3  # one server per node
        assert sessions_on(envs) == [4, 4, 4]
        rollout = Rollout(envs)
        envs.reset(seed=0)
        for _ in range(3):
            rollout.step()

        # A worker node goes away (a spot machine taken back): no CPU is left for a replacement.
        victim, node = next((p, worker_node_of(cluster, p.placement["node_id"])) for p in providers if worker_node_of(cluster, p.placement["node_id"]))
        lost_url, lost_envs = victim.base_url, envs.unwrapped._recovery.envs_on(victim.base_url)
        cluster.remove_node(node)
        started = time.monotonic()
        restarted = rollout.until(lambda flags: flags.any(), timeout=120)
        elapsed = time.monotonic() - started
        assert np.flatnonzero(restarted).tolist() == lost_envs.tolist()
        # 5 s of waiting for a replacement, then the move: ~6 s here; the bound leaves room for a loaded machine.
        assert elapsed < 30, f"re-homing took {elapsed:.1f}s"
        print(f"lost node: envs re-homed after {elapsed:.1f}s")
        # Re-homed on the two survivors, 6 sessions each: none lost, none held twice.
        assert lost_url not in envs.unwrapped._recovery.urls
        assert sessions_on(envs) == [6, 6]
        for _ in range(3):
            assert not rollout.step().any()

        # A node joins: the replacement, waiting all along, lands there and takes 4 envs back.
        joined = cluster.add_node(**NODE)
        started = time.monotonic()
        restarted = rollout.until(lambda flags: flags.any(), timeout=180)
        print(f"node added: envs moved back after {time.monotonic() - started:.1f}s")
        assert restarted.sum() == 4 and set(np.flatnonzero(restarted)) <= set(lost_envs)  # only guests move
        assert sorted(sessions_on(envs)) == [4, 4, 4]
        assert victim.placement["node_id"] == joined.node_id
        pids += [victim.placement["server_pid"], victim.placement["actor_pid"]]
        for _ in range(3):
            assert not rollout.step().any()
        assert rollout.restarts.max() == 2  # no env started over more than twice (lost, then moved back)
    finally:
        envs.close()
    assert gone(pids)
    assert free_cpus_become(3)


def test_when_no_server_has_room_the_error_says_so_at_once(cluster):
    # Two full servers (2 sessions each) and no waiting for a replacement: nowhere to go.
    options = {"num_cpus": 1, "replacement_timeout": 0, "server_args": ["--max-sessions", "2"]}
    envs = gym.make_vec("openenv/echo-v0", num_envs=4, provider="ray", num_servers=2, provider_options=options)
    try:
        providers = list(envs.unwrapped._providers)
        pids = [pid for p in providers for pid in (p.placement["server_pid"], p.placement["actor_pid"])]
        envs.reset(seed=0)
        ray.kill(providers[0].actor, no_restart=True)
        assert gone([providers[0].placement["server_pid"]])
        with pytest.raises(ServerStartError, match=r"its 2 envs do not fit on the surviving servers \(free session slots: .*: 0\)"):
            envs.step(np.array(["a"] * 4))
    finally:
        envs.close()  # also cancels the replacement that was still starting
    pids += [p.placement.get("actor_pid") for p in providers if p.placement]
    assert gone(pids)
    assert free_cpus_become(3)


def test_add_and_remove_servers_spread_envs_evenly(cluster):
    envs = gym.make_vec("openenv/echo-v0", num_envs=9, provider="ray", num_servers=1, provider_options={"num_cpus": 1})
    pids = []
    try:
        rollout = Rollout(envs)
        envs.reset(seed=0)
        rollout.step()
        envs.unwrapped.add_servers(2)
        providers = list(envs.unwrapped._providers)
        pids += [pid for p in providers for pid in (p.placement["server_pid"], p.placement["actor_pid"])]
        assert len({p.placement["node_id"] for p in providers}) == 3
        assert sessions_on(envs) == [3, 3, 3]
        assert rollout.step().sum() == 6  # the moved envs start over; the 3 that stayed do not
        rollout.step()

        envs.unwrapped.remove_servers(2)
        assert gone(pids[2:])  # the two newest servers and their actors
        assert sessions_on(envs) == [9]
        assert rollout.step().sum() == 6
        rollout.step()
        with pytest.raises(ValueError, match="count must be in"):
            envs.unwrapped.remove_servers(1)  # never the last one
    finally:
        envs.close()
    assert gone(pids)
    assert free_cpus_become(3)


def test_one_event_loop_drives_1024_sessions_on_8_servers_over_3_nodes(cluster):
    options = {"num_cpus": 0.25}  # fractions: several servers per node
    envs = gym.make_vec("openenv/echo-v0", num_envs=1024, provider="ray", num_servers=8, provider_options=options)
    try:
        assert len({p.placement["node_id"] for p in envs.unwrapped._providers}) == 3
        assert sessions_on(envs) == [128] * 8
        rollout = Rollout(envs)
        envs.reset(seed=0)
        for _ in range(3):
            assert not rollout.step().any()
    finally:
        envs.close()
    assert free_cpus_become(3)
