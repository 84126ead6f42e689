"""Cold start per provider: seconds from ``gym.make`` to the first ``reset`` result.

    python -m benchmarks.cold_start                       # echo and Atari, every provider
    python -m benchmarks.cold_start --providers local docker --repeats 5

"Cold" means a new server: a new process, sandbox, container or Ray actor
each time. What is shared across repeats is shared in real use too and timed
once, apart: the Docker image build (reused while the checkout is unchanged)
and ``ray.init`` (one per driver). The Docker engine comes from
``scripts/docker-setup.sh``, as in the tests. Results: benchmarks/results/cold_start.json.
"""

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym

import gym_openenv  # noqa: F401  (registers the ids)
from benchmarks.harness import write_results

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = {
    "echo": ("openenv/echo-v0", {}),
    "atari": ("openenv/atari-v0", {"game": "pong"}),
}


@dataclass
class Args:
    envs: list[str] = field(default_factory=lambda: ["echo", "atari"])
    """environments to start (keys of ENVIRONMENTS)"""
    providers: list[str] = field(default_factory=lambda: ["local", "sandbox", "docker", "ray"])
    """providers to compare"""
    repeats: int = 3
    """cold starts per (environment, provider); the median is reported"""


def docker_engine() -> float:
    """Start (or find) the engine and apply its settings; return the one-off image build time."""
    out = subprocess.run(["bash", "scripts/docker-setup.sh"], cwd=ROOT, check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value.strip("'")
    from gym_openenv.providers.docker import build_image, dockerfile_for

    started = time.perf_counter()
    for name in ENVIRONMENTS:
        build_image(dockerfile_for(gym.spec(ENVIRONMENTS[name][0]).kwargs["environment"]))
    return time.perf_counter() - started


def ray_cluster() -> float:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - started


def cold_start(env_id: str, provider: str, kwargs: dict) -> float:
    started = time.perf_counter()
    env = gym.make(env_id, provider=provider, **kwargs)
    env.reset(seed=0)
    elapsed = time.perf_counter() - started
    env.close()
    return elapsed


def main(args: Args) -> None:
    once = {}
    if "docker" in args.providers:
        once["docker image build or reuse (all envs)"] = docker_engine()
    if "ray" in args.providers:
        once["ray.init (local cluster)"] = ray_cluster()
    rows = []
    for name in args.envs:
        env_id, kwargs = ENVIRONMENTS[name]
        for provider in args.providers:
            times = [cold_start(env_id, provider, kwargs) for _ in range(args.repeats)]
            rows.append({"env": name, "provider": provider, "median_s": statistics.median(times), "min_s": min(times), "times_s": times})
    print(f"{'env':8} {'provider':9} {'median s':>9} {'min s':>7}")
    for row in rows:
        print(f"{row['env']:8} {row['provider']:9} {row['median_s']:9.2f} {row['min_s']:7.2f}")
    for what, seconds in once.items():
        print(f"once: {what}: {seconds:.2f} s")
    path = write_results("cold_start", {**vars(args), "once_s": once}, rows)
    print(f"wrote {path}")


def parse_args() -> Args:
    import argparse

    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=defaults.envs, choices=list(ENVIRONMENTS))
    parser.add_argument("--providers", nargs="+", default=defaults.providers, choices=["local", "sandbox", "docker", "ray"])
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    return Args(**vars(parser.parse_args()))


if __name__ == "__main__":
    main(parse_args())
