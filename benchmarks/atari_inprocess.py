"""Atari steps per second in one process: what the server-side wrapper costs.

No server, no wire: the cost ``AtariEnvironment`` adds on top of ale-py, and
what ``AtariEnvironment.step_batch`` costs over 16 sessions (the call the
server makes for one batched message).

* ``ale_env``: ``ale_py.env.AtariEnv`` stepped directly (the floor);
* ``gym_make``: ``gym.make("ALE/Pong-v5")`` (adds gymnasium's checker and
  order-enforcing wrappers);
* ``environment``: ``AtariEnvironment.step`` with typed actions/observations;
* ``ale_env_x16`` / ``step_batch_x16``: 16 envs, one ``AtariEnv.step`` each
  vs one ``AtariEnvironment.step_batch`` call per round.

Every contender plays random actions and resets (unseeded) when an episode
ends. Rates are steps per CPU second of this (single-threaded) process. Contenders take turns in short slices (``--repeats``) and the best slice
counts, so load from other processes skews them alike.

Run:
    python benchmarks/atari_inprocess.py                  # ~2 s per contender
    python benchmarks/atari_inprocess.py --seconds 10 --game breakout

Writes benchmarks/results/atari_inprocess.json and prints the ratios.
"""

from __future__ import annotations

import argparse
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
from ale_py.env import AtariEnv

from gym_openenv.servers.atari.models import AtariAction
from gym_openenv.servers.atari.server.environment import AtariEnvironment, rom_id

RESULTS = Path(__file__).parent / "results"


@dataclass
class Args:
    game: str = "pong"
    """ALE ROM id"""
    seconds: float = 2.0
    """CPU-time budget per contender"""
    repeats: int = 4
    """slices per contender, taken in turns; the best counts"""
    batch: int = 16
    """sessions per step_batch call"""
    seed: int = 0
    """seed for games and actions"""
    out: str = str(RESULTS / "atari_inprocess.json")
    """JSON output path"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def timed(round_: Callable[[], int], seconds: float) -> float:
    """Env steps per CPU second of ``round_`` (which returns the steps it took).

    CPU time of this process, not wall time: everything here runs on one
    thread, and CPU time stays honest on a machine shared with other work.
    """
    steps, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        steps += round_()
    return steps / elapsed


def gym_round(env: gym.Env, rng: np.random.Generator) -> Callable[[], int]:
    n = env.action_space.n

    def round_() -> int:
        *_, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            env.reset()
        return 1

    return round_


def environment_round(envs: list[AtariEnvironment], rng: np.random.Generator, batched: bool) -> Callable[[], int]:
    n = envs[0].field_spaces()["action"]["action_id"].n

    def round_() -> int:
        actions = [AtariAction(action_id=int(a)) for a in rng.integers(n, size=len(envs))]
        if batched:
            results = AtariEnvironment.step_batch(envs, actions)
        else:
            results = [env.step(action) for env, action in zip(envs, actions)]
        for env, obs in zip(envs, results):
            if obs.done:
                env.reset()
        return len(envs)

    return round_


def gym_batch_round(envs: list[gym.Env], rng: np.random.Generator) -> Callable[[], int]:
    rounds = [gym_round(env, rng) for env in envs]
    return lambda: sum(r() for r in rounds)


def main() -> None:
    args = parse_args()
    game = rom_id(args.game)
    gym.register_envs(ale_py)
    v5_id = f"ALE/{game.title().replace('_', '')}-v5"
    rng = np.random.default_rng(args.seed)

    def seeded(env, i=0):
        env.reset(seed=args.seed + i)
        return env

    contenders: dict[str, Callable[[], Callable[[], int]]] = {
        "ale_env": lambda: gym_round(seeded(AtariEnv(game, max_num_frames_per_episode=108_000)), rng),
        "gym_make": lambda: gym_round(seeded(gym.make(v5_id)), rng),
        "environment": lambda: environment_round([seeded(AtariEnvironment(game))], rng, batched=False),
        f"ale_env_x{args.batch}": lambda: gym_batch_round(
            [seeded(AtariEnv(game, max_num_frames_per_episode=108_000), i) for i in range(args.batch)], rng
        ),
        f"step_batch_x{args.batch}": lambda: environment_round(
            [seeded(AtariEnvironment(game), i) for i in range(args.batch)], rng, batched=True
        ),
    }
    rounds = {name: build() for name, build in contenders.items()}
    slices: dict[str, list[float]] = {name: [] for name in rounds}
    for _ in range(args.repeats):
        for name, round_ in rounds.items():
            slices[name].append(timed(round_, args.seconds / args.repeats))
    results = {name: max(values) for name, values in slices.items()}
    for name, value in results.items():
        print(f"{name:>16}: {value:9.0f} steps per CPU second")

    ratios = {
        "environment / ale_env": results["environment"] / results["ale_env"],
        "environment / gym_make": results["environment"] / results["gym_make"],
        f"step_batch_x{args.batch} / ale_env_x{args.batch}": results[f"step_batch_x{args.batch}"]
        / results[f"ale_env_x{args.batch}"],
    }
    for name, ratio in ratios.items():
        print(f"{name:>36}: {ratio:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": dataclasses.asdict(args),
                "steps_per_second": results,
                "slices": slices,
                "ratios": ratios,
                "ale_py": ale_py.__version__,
                "machine": {"python": platform.python_version(), "cpu": platform.processor(), "cores": os.cpu_count()},
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
