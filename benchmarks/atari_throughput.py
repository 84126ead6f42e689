"""Atari (Pong) steps per second against the number of environments.

Every contender steps ``num_envs`` Pong games with random actions, (210, 160, 3)
RGB observations, v5 settings (frameskip 4, sticky actions 0.25), and resets
games as they end; a step of N envs counts N steps.

* ``ale_make`` / ``openenv_make`` (N = 1 only): one ``gym.make("ALE/Pong-v5")``
  vs one ``gym.make("openenv/atari-v0")`` (a server in a child process, the
  batched binary protocol as a batch of one, frames through shared memory),
  reset when an episode ends, as ``DummyVecEnv`` would;
* ``gym_openenv``: ``gym.make_vec("openenv/atari-v0", num_envs=N)``, servers in
  child processes (one per core), the batched binary protocol;
* ``gymnasium_async`` / ``gymnasium_sync``: ``AsyncVectorEnv`` (one process
  per env) and ``SyncVectorEnv`` over ``ALE/Pong-v5``;
* ``ale_vector``: ale-py's C++ ``AtariVectorEnv`` set up as close to v5 as it
  goes (210x160 RGB, one frame, no max-pool/no-op/fire reset/clipping); it is
  *not* frame-exact with v5 (see gym_openenv/servers/atari/README.md);
* ``envpool``: ``envpool.make_gymnasium("Pong-v5")`` with the same settings,
  when envpool is installed (skipped with a note otherwise);
* ``openenv_client``: OpenEnv's reference client (openenv-core
  ``GenericEnvClient``), one WebSocket session per env, JSON, all stepped
  concurrently on one event loop, against the same servers as ``gym_openenv``;
  screens are turned back into uint8 arrays, as a learner needs them.

Run:
    python benchmarks/atari_throughput.py                         # ~2 s per point, ~2 min
    python benchmarks/atari_throughput.py --seconds 10 --num-envs 1,4,8,16,32,64
    python benchmarks/atari_throughput.py --contenders gym_openenv,envpool

Writes benchmarks/results/atari_throughput.{json,png} and prints steps/s and
the ratio of each contender to ``gym_openenv``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
from tqdm import tqdm

import gym_openenv  # noqa: F401  (registers openenv/* from registry.yaml)
from gym_openenv.providers import LocalProcessProvider

RESULTS = Path(__file__).parent / "results"
ATARI_ID = "openenv/atari-v0"
ENVIRONMENT = "gym_openenv.servers.atari.server.environment:AtariEnvironment"
CONTENDERS = ("ale_make", "openenv_make", "gym_openenv", "gymnasium_async", "gymnasium_sync", "ale_vector", "envpool", "openenv_client")


@dataclass
class Args:
    num_envs: str = "1,4,8,16,32"
    """comma-separated numbers of environments"""
    seconds: float = 2.0
    """measured wall-clock time per point (after one warm-up step)"""
    repeats: int = 2
    """slices per point; the contenders of one num_envs take turns and the best slice counts"""
    contenders: str = ",".join(CONTENDERS)
    """comma-separated subset of the contenders"""
    seed: int = 0
    """seed for games and actions"""
    out: str = str(RESULTS / "atari_throughput")
    """output path without extension (.json and .png are written)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


# --- contenders: each builds a `step()` that steps all envs once, and a `close()` ---


@dataclass
class Runner:
    step: Callable[[], None]
    close: Callable[[], None]


def single_runner(env_id: str, num_envs: int, seed: int, **kwargs) -> Runner | None:
    """One gymnasium Env (only for num_envs == 1), reset when its episode ends."""
    if num_envs != 1:
        return None
    gym.register_envs(ale_py)
    env = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    return Runner(step, env.close)


def vector_runner(envs: gym.vector.VectorEnv, seed: int) -> Runner:
    """Any gymnasium VectorEnv (autoreset is the vector env's own)."""
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    n, size = envs.single_action_space.n, envs.num_envs
    return Runner(lambda: envs.step(rng.integers(n, size=size)), envs.close)


def gym_openenv_runner(num_envs: int, seed: int) -> Runner:
    return vector_runner(gym.make_vec(ATARI_ID, num_envs=num_envs, game="pong"), seed)


def gymnasium_runner(num_envs: int, seed: int, vectorization_mode: str) -> Runner:
    gym.register_envs(ale_py)
    return vector_runner(gym.make_vec("ALE/Pong-v5", num_envs=num_envs, vectorization_mode=vectorization_mode), seed)


def ale_vector_runner(num_envs: int, seed: int) -> Runner:
    envs = ale_py.vector_env.AtariVectorEnv(
        "pong",
        num_envs,
        img_height=210,
        img_width=160,
        grayscale=False,
        stack_num=1,
        maxpool=False,
        noop_max=0,
        use_fire_reset=False,
        reward_clipping=False,
        repeat_action_probability=0.25,
        frameskip=4,
        max_num_frames_per_episode=108_000,
    )
    return vector_runner(envs, seed)


def envpool_runner(num_envs: int, seed: int) -> Runner:
    import envpool  # optional: main() skips this contender when it is missing

    envs = envpool.make_gymnasium(
        "Pong-v5",
        num_envs=num_envs,
        seed=seed,
        img_height=210,
        img_width=160,
        gray_scale=False,
        stack_num=1,
        frame_skip=4,
        noop_max=1,
        episodic_life=False,
        reward_clip=False,
        repeat_action_probability=0.25,
        use_fire_reset=False,
        max_episode_steps=27_000,
    )
    rng = np.random.default_rng(seed)
    envs.reset()
    n = envs.action_space.n
    return Runner(lambda: envs.step(rng.integers(n, size=num_envs)), envs.close)


def openenv_client_runner(num_envs: int, seed: int) -> Runner:
    from openenv.core.generic_client import GenericEnvClient

    num_servers = max(1, min(num_envs, os.cpu_count() or 1))
    providers = [LocalProcessProvider(ENVIRONMENT, {"game": "pong"}) for _ in range(num_servers)]
    urls = [p.start() for p in providers]
    loop = asyncio.new_event_loop()
    clients = [GenericEnvClient(base_url=urls[i % num_servers]) for i in range(num_envs)]
    rng = np.random.default_rng(seed)

    async def reset_all() -> None:
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.gather(*(c.reset(seed=seed + i) for i, c in enumerate(clients)))

    async def play(client: GenericEnvClient, action: int) -> np.ndarray:
        result = await client.step({"action_id": action})
        if result.done:
            result = await client.reset()
        return np.asarray(result.observation["screen"], dtype=np.uint8)

    async def step_all() -> None:
        actions = rng.integers(6, size=num_envs)
        await asyncio.gather(*(play(c, int(a)) for c, a in zip(clients, actions)))

    async def close_all() -> None:
        await asyncio.gather(*(c.close() for c in clients))

    def close() -> None:
        loop.run_until_complete(close_all())
        loop.close()
        for p in providers:
            p.stop()

    loop.run_until_complete(reset_all())
    return Runner(lambda: loop.run_until_complete(step_all()), close)


BUILDERS: dict[str, Callable[[int, int], Runner | None]] = {
    "ale_make": lambda n, seed: single_runner("ALE/Pong-v5", n, seed),
    "openenv_make": lambda n, seed: single_runner(ATARI_ID, n, seed, game="pong"),
    "gym_openenv": gym_openenv_runner,
    "gymnasium_async": lambda n, seed: gymnasium_runner(n, seed, "async"),
    "gymnasium_sync": lambda n, seed: gymnasium_runner(n, seed, "sync"),
    "ale_vector": ale_vector_runner,
    "envpool": envpool_runner,
    "openenv_client": openenv_client_runner,
}


def measure(runner: Runner, num_envs: int, seconds: float) -> float:
    rounds, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        runner.step()
        rounds += 1
    return rounds * num_envs / elapsed


# --- report -----------------------------------------------------------------------


def print_table(results: dict[str, dict[int, float]], sizes: list[int]) -> None:
    header = f"{'steps/s':>16}" + "".join(f"{n:>10}" for n in sizes)
    print(header)
    for name, row in results.items():
        print(f"{name:>16}" + "".join(f"{row[n]:10.0f}" if n in row else f"{'-':>10}" for n in sizes))
    if "gym_openenv" in results:
        print(f"\n{'gym_openenv / x':>16}" + "".join(f"{n:>10}" for n in sizes))
        base = results["gym_openenv"]
        for name, row in results.items():
            print(f"{name:>16}" + "".join(f"{base[n] / row[n]:10.2f}" if n in row and n in base else f"{'-':>10}" for n in sizes))
    if results.get("ale_make", {}).get(1) and results.get("openenv_make", {}).get(1):
        print(f"\nsingle env: openenv_make / ale_make = {results['openenv_make'][1] / results['ale_make'][1]:.2f}x")


def plot(results: dict[str, dict[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in results.items():
        sizes = sorted(row)
        ax.plot(sizes, [row[n] for n in sizes], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("num_envs")
    ax.set_ylabel("env steps / s")
    ax.set_title(f"Pong, 210x160 RGB, v5 settings ({os.cpu_count()} cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    sizes = [int(n) for n in args.num_envs.split(",")]
    names = [n.strip() for n in args.contenders.split(",")]
    unknown = set(names) - set(BUILDERS)
    if unknown:
        raise SystemExit(f"unknown contender(s) {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    skipped: dict[str, str] = {}
    if "envpool" in names:
        try:
            import envpool  # noqa: F401
        except ImportError as e:
            skipped["envpool"] = f"not installed ({e}); try `pip install -c constraints.txt -e '.[bench]'`"
            names.remove("envpool")
            print(f"note: skipping envpool: {skipped['envpool']}")

    # Per num_envs, every contender is built and warmed up, then they take turns
    # in slices: load from other processes then skews them alike.
    results: dict[str, dict[int, float]] = {name: {} for name in names}
    with tqdm(total=len(names) * len(sizes) * args.repeats, unit="slice") as bar:
        for n in sizes:
            runners: dict[str, Runner] = {}
            try:
                for name in names:
                    bar.set_description(f"starting {name} x{n}")
                    runner = BUILDERS[name](n, args.seed)
                    if runner is None:  # not a contender at this size
                        bar.update(args.repeats)
                        continue
                    runners[name] = runner
                    runner.step()  # warm-up: the first step pays for lazy set-up
                for _ in range(args.repeats):
                    for name, runner in runners.items():
                        bar.set_description(f"{name} x{n}")
                        rate = measure(runner, n, args.seconds / args.repeats)
                        results[name][n] = max(rate, results[name].get(n, 0.0))
                        bar.update()
            finally:
                for runner in runners.values():
                    runner.close()

    print()
    print_table(results, sizes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "args": dataclasses.asdict(args),
                "steps_per_second": {name: {str(n): v for n, v in row.items()} for name, row in results.items()},
                "skipped": skipped,
                "versions": {"ale_py": ale_py.__version__, "gymnasium": gym.__version__},
                "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
            },
            indent=2,
        )
    )
    plot(results, out.with_suffix(".png"))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
