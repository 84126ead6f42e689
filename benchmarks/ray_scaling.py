"""Learner-side scaling: one vector env (one event loop) driving many servers on a Ray cluster.

Steps ``--num-envs`` echo sessions (1,024 by default) spread over 1 to 12
servers and reports steps/s and how busy the learner process is (CPU seconds
per second: 1.0 is one core, the ceiling of its event loop). Echo's steps cost
the servers next to nothing, so the curve shows where the learner side saturates.

* ``ray``: ``gym.make_vec(..., provider="ray", num_servers=N)``, servers as actors
  spread over the cluster's nodes (each asks for ``--cpus-per-server`` CPUs);
* ``local``: the same servers as child processes of the learner (no Ray), the baseline.

Without ``--address`` the cluster is simulated on this machine with
``ray.cluster_utils.Cluster``: ``--nodes`` nodes of ``--node-cpus`` logical CPUs
each, all on 127.0.0.2 (so every node shares this machine's cores).

    python -m benchmarks.ray_scaling                          # 3 simulated nodes, 1,024 envs
    python -m benchmarks.ray_scaling --address HEAD_IP:6379    # a real cluster (ray start --head ...)

Writes benchmarks/results/ray_scaling.{json,png}; prints steps/s and ratios to ``local``.
"""

import argparse
import os
import time
from contextlib import contextmanager

import gymnasium as gym
import psutil
import ray

import gym_openenv  # noqa: F401
from benchmarks.harness import RESULTS, print_table, write_results

CONTENDERS = ("ray", "local")


@contextmanager
def simulated_cluster(nodes: int, node_cpus: int):
    """A Ray cluster of ``nodes`` nodes on this machine; Ray connected to it until exit."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on loopback
    node = {"num_cpus": node_cpus, "node_ip_address": "127.0.0.2", "object_store_memory": 80 * 2**20}
    cluster = Cluster()
    try:
        cluster.add_node(**node, include_dashboard=False)
        for _ in range(nodes - 1):
            cluster.add_node(**node)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


def bench(contender: str, num_envs: int, num_servers: int, cpus_per_server: float, seconds: float) -> dict:
    options = {"num_cpus": cpus_per_server} if contender == "ray" else {}
    envs = gym.make_vec("openenv/echo-v0", num_envs=num_envs, provider=contender, num_servers=num_servers, provider_options=options)
    try:
        nodes = len({p.placement["node_id"] for p in envs.unwrapped._providers}) if contender == "ray" else 1
        actions = ("hello",) * num_envs
        envs.reset(seed=0)
        for _ in range(3):
            envs.step(actions)
        me = psutil.Process()
        cpu_before, steps, start = sum(me.cpu_times()[:2]), 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            envs.step(actions)
            steps += num_envs
        learner_cpu = (sum(me.cpu_times()[:2]) - cpu_before) / elapsed
    finally:
        envs.close()
    return {"contender": contender, "num_servers": num_servers, "nodes": nodes, "steps_per_s": steps / elapsed, "learner_cpu": learner_cpu}


def plot(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for contender in CONTENDERS:
        points = sorted((r["num_servers"], r["steps_per_s"], r["learner_cpu"]) for r in rows if r["contender"] == contender)
        if points:
            servers, rates, cpu = zip(*points)
            rate_ax.plot(servers, rates, marker="o", label=contender)
            cpu_ax.plot(servers, cpu, marker="o", label=contender)
    rate_ax.set(xlabel="servers", ylabel="steps/s", title=f"{rows[0]['num_envs']:,} echo sessions, one learner event loop")
    cpu_ax.set(xlabel="servers", ylabel="learner CPU (cores)", title="learner process CPU use")
    cpu_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    counts = sorted({r["num_servers"] for r in rows})
    for ax in (rate_ax, cpu_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.grid(True, alpha=0.3)
        ax.legend()
    rate_ax.set_ylim(bottom=0)
    cpu_ax.set_ylim(bottom=0)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "ray_scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="an existing Ray cluster (default: simulate one here)")
    parser.add_argument("--nodes", type=int, default=3, help="simulated nodes")
    parser.add_argument("--node-cpus", type=int, default=4, help="logical CPUs of each simulated node")
    parser.add_argument("--cpus-per-server", type=float, default=1.0, help="CPUs each server actor asks for")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--num-servers", default="1,2,4,8,12", help="comma-separated server counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed stepping per point")
    parser.add_argument("--repeats", type=int, default=2, help="runs per point (the best counts: others share this machine)")
    args = parser.parse_args()
    counts = [int(n) for n in args.num_servers.split(",")]
    rows = []
    cluster = simulated_cluster(args.nodes, args.node_cpus) if args.address is None else _connected(args.address)
    with cluster:
        for n in counts:
            for contender in CONTENDERS:
                runs = [bench(contender, args.num_envs, n, args.cpus_per_server, args.seconds) for _ in range(args.repeats)]
                row = max(runs, key=lambda r: r["steps_per_s"])
                # What one fully busy learner core would step at this cost per step.
                row.update(num_envs=args.num_envs, learner_ceiling=row["steps_per_s"] / max(row["learner_cpu"], 1e-9))
                rows.append(row)
                print(
                    f"{contender:>6} servers={n:<3} nodes={row['nodes']} {row['steps_per_s']:>10,.0f} steps/s  "
                    f"learner CPU {row['learner_cpu']:.2f} (ceiling {row['learner_ceiling']:,.0f} steps/s)",
                    flush=True,
                )
    print_table(rows, baseline="local", x="num_servers")
    write_results("ray_scaling", vars(args), rows)
    print(plot(rows))


@contextmanager
def _connected(address: str):
    ray.init(address=address, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
