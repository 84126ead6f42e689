"""Connect Four steps per second: gym_openenv's vector env vs pyspiel vs Shimmy.

Every contender plays the same thing: random legal moves for both players
(one step = one ply, so the gym_openenv env runs in self-play mode,
``multi_agent=True``), building the observation tensor and the legal-action
mask after every move, and starting a new game when one ends.

* ``gym_openenv``: ``gym.make_vec("openenv/openspiel-v0", num_envs=N)``, the
  server in a child process, actions drawn from the batched ``action_mask``;
* ``in_process``: the same environment class without a server
  (``gym_openenv.inprocess.InProcessEnv``), one env: the cost of the
  environment logic alone, so the rest of gym_openenv's time is transport;
* ``pyspiel``: a plain loop over ``pyspiel`` states in this process (the floor
  on overhead: no spaces, no server);
* ``shimmy``: ``shimmy.OpenSpielCompatibilityV0`` (PettingZoo AEC API).

Run:
    python benchmarks/openspiel_connect_four.py            # small budget
    python benchmarks/openspiel_connect_four.py --steps 200000 --num-envs 128

Writes benchmarks/results/openspiel_connect_four.{json,png} and prints the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

GAME = "connect_four"
ENVIRONMENT = "gym_openenv.servers.openspiel.server.environment:OpenSpielEnvironment"
RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    steps: int = 20_000
    """plies per contender (the vector env counts every sub-environment's step)"""
    rounds: int = 2
    """the budget is split into rounds, each running every contender in turn; the
    median round is reported (the machine may be shared: rounds even out bursts)"""
    num_envs: int = 32
    """sub-environments in the gym_openenv vector env (one batched message steps them all)"""
    seed: int = 0
    """seed for games and random moves"""
    out: str = str(RESULTS / "openspiel_connect_four")
    """output path without extension (.json and .png are written)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def random_legal(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """One uniformly random legal action per row of ``masks`` (batched)."""
    scores = rng.random(masks.shape) * masks
    return scores.argmax(axis=-1)


def bench_gym_openenv(args: Args, steps: int, progress: tqdm) -> float:
    import gymnasium as gym

    import gym_openenv  # noqa: F401  (registers openenv/*)

    envs = gym.make_vec("openenv/openspiel-v0", num_envs=args.num_envs, game=GAME, multi_agent=True)
    rng = np.random.default_rng(args.seed)
    try:
        obs, _ = envs.reset(seed=args.seed)
        resetting = np.zeros(args.num_envs, dtype=bool)
        done = 0
        start = time.perf_counter()
        while done < steps:
            # A sub-env whose episode just ended spends this step resetting
            # (gymnasium's next-step autoreset): its action is ignored and it
            # plays no ply, so it is not counted.
            obs, _, terminated, truncated, _ = envs.step(random_legal(rng, obs["action_mask"]))
            plies = int(args.num_envs - resetting.sum())
            resetting = terminated | truncated
            done += plies
            progress.update(plies)
        return done / (time.perf_counter() - start)
    finally:
        envs.close()


def bench_in_process(args: Args, steps: int, progress: tqdm) -> float:
    from gym_openenv.inprocess import InProcessEnv

    env = InProcessEnv(ENVIRONMENT, game=GAME, multi_agent=True)
    rng = np.random.default_rng(args.seed)
    obs, _ = env.reset(seed=args.seed)
    start = time.perf_counter()
    for i in range(steps):
        obs, _, terminated, truncated, _ = env.step(int(random_legal(rng, obs["action_mask"])))
        if terminated or truncated:
            obs, _ = env.reset()
        if i % 1000 == 999:
            progress.update(1000)
    elapsed = time.perf_counter() - start
    progress.update(steps % 1000)
    return steps / elapsed


def bench_pyspiel(args: Args, steps: int, progress: tqdm) -> float:
    import pyspiel

    game = pyspiel.load_game(GAME)
    rng = np.random.default_rng(args.seed)
    num_actions = game.num_distinct_actions()
    state = game.new_initial_state()
    start = time.perf_counter()
    for i in range(steps):
        legal = state.legal_actions()
        state.apply_action(legal[rng.integers(len(legal))])
        if state.is_terminal():
            state = game.new_initial_state()
        player = state.current_player()
        np.asarray(state.observation_tensor(player), dtype=np.float32)
        np.zeros(num_actions, np.int8)[state.legal_actions(player)] = 1
        if i % 1000 == 999:
            progress.update(1000)
    elapsed = time.perf_counter() - start
    progress.update(steps % 1000)
    return steps / elapsed


def bench_shimmy(args: Args, steps: int, progress: tqdm) -> float:
    from shimmy import OpenSpielCompatibilityV0

    env = OpenSpielCompatibilityV0(game_name=GAME)
    rng = np.random.default_rng(args.seed)
    env.reset(seed=args.seed)
    done = 0
    start = time.perf_counter()
    while done < steps:
        _, _, terminated, truncated, info = env.last()
        if terminated or truncated:
            env.step(None)  # AEC: each finished agent is stepped out with None
            if not env.agents:
                env.reset()
            continue
        env.step(int(random_legal(rng, info["action_mask"])))
        done += 1
        if done % 1000 == 0:
            progress.update(1000)
    elapsed = time.perf_counter() - start
    progress.update(done % 1000)
    return done / elapsed


CONTENDERS = {
    "gym_openenv": bench_gym_openenv,
    "in_process": bench_in_process,
    "pyspiel": bench_pyspiel,
    "shimmy": bench_shimmy,
}


def plot(results: dict[str, float], path: Path, args: Args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(results)
    bars = ax.bar(names, [results[n] for n in names], color=["tab:blue", "tab:cyan", "tab:gray", "tab:orange"])
    ax.bar_label(bars, fmt="{:,.0f}")
    ax.set_yscale("log")  # the contenders differ by orders of magnitude
    ax.set_ylabel("plies / second (log)")
    ax.set_title(f"{GAME}, random play (gym_openenv: make_vec, {args.num_envs} envs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    slices: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with tqdm(total=(args.steps // args.rounds) * args.rounds * len(CONTENDERS), unit="ply", mininterval=1.0) as progress:
        for _ in range(args.rounds):
            for name, bench in CONTENDERS.items():
                progress.set_description(name)
                slices[name].append(bench(args, args.steps // args.rounds, progress))
    results = {name: float(np.median(rates)) for name, rates in slices.items()}

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ratios = {
        "gym_openenv/pyspiel": results["gym_openenv"] / results["pyspiel"],
        "gym_openenv/shimmy": results["gym_openenv"] / results["shimmy"],
        "gym_openenv/in_process": results["gym_openenv"] / results["in_process"],
        "in_process/pyspiel": results["in_process"] / results["pyspiel"],
    }
    report = {
        "game": GAME,
        "args": dataclasses.asdict(args),
        "steps_per_second": results,
        "rounds": slices,
        "ratios": ratios,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_1m_after": os.getloadavg()[0],  # others' work on a shared machine skews rates
        },
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, out.with_suffix(".png"), args)

    for name, value in results.items():
        print(f"{name:>12}: {value:12,.0f} plies/s")
    for name, value in ratios.items():
        print(f"{name:>22}: {value:.3f}x")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
