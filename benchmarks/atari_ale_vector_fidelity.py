"""Is ale-py's C++ ``AtariVectorEnv`` frame-exact with ``ALE/<Game>-v5``?

The question behind ``AtariEnvironment.step_batch``: could the server step its
sessions through ale-py's native vector env and keep v5's exact trajectories?
This script configures ``AtariVectorEnv`` as close to v5 as it goes (210x160
RGB, one frame, no max-pool, no no-op or fire reset, no reward clipping,
sticky actions 0.25, frameskip 4) and plays the same random actions through it
and through ``AtariEnv`` (what ``gym.make("ALE/<Game>-v5")`` builds), one
episode per seed.

v5 seeds the emulator with a value derived from the seed
(``SeedSequence(seed).generate_state(2)[1]`` as int32); the vector env takes
the emulator seed directly and ignores negative ones, so the derived seed is
passed when it is non-negative and the seed is reported "unreachable" otherwise.

Run:
    python benchmarks/atari_ale_vector_fidelity.py                 # 3 games x 6 seeds
    python benchmarks/atari_ale_vector_fidelity.py --games pong --seeds 20

Prints one line per (game, seed): the first step that differs and what differs.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import numpy as np
from ale_py.env import AtariEnv
from ale_py.vector_env import AtariVectorEnv


@dataclass
class Args:
    games: str = "pong,breakout,space_invaders"
    """comma-separated ALE ROM ids"""
    seeds: int = 6
    """seeds 0..seeds-1 per game"""
    max_steps: int = 4000
    """steps per episode at most"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def v5_emulator_seed(seed: int) -> int:
    """The ALE ``random_seed`` that ``AtariEnv.reset(seed=seed)`` sets."""
    return int(np.int32(np.random.SeedSequence(seed).generate_state(n_words=2)[1]))


def compare(game: str, seed: int, max_steps: int) -> str:
    emulator_seed = v5_emulator_seed(seed)
    if emulator_seed < 0:
        return f"unreachable: v5's emulator seed {emulator_seed} is negative, which AtariVectorEnv ignores"
    vector = AtariVectorEnv(
        game, 1, img_height=210, img_width=160, grayscale=False, stack_num=1, maxpool=False, noop_max=0,
        use_fire_reset=False, reward_clipping=False, repeat_action_probability=0.25, frameskip=4,
        max_num_frames_per_episode=108_000,
    )  # fmt: skip
    v5 = AtariEnv(game, repeat_action_probability=0.25, max_num_frames_per_episode=108_000)
    try:
        obs, _ = vector.reset(seed=np.array([emulator_seed]))
        if not np.array_equal(obs[0, 0], v5.reset(seed=seed)[0]):
            return "differs at reset"
        actions = np.random.default_rng(seed)
        for t in range(max_steps):
            a = int(actions.integers(v5.action_space.n))
            obs, reward, terminated, truncated, info = vector.step(np.array([a]))
            v5_obs, v5_reward, v5_terminated, v5_truncated, v5_info = v5.step(a)
            differs = [
                name
                for name, same in [
                    ("observation", np.array_equal(obs[0, 0], v5_obs)),
                    ("reward", reward[0] == v5_reward),
                    ("terminated", terminated[0] == v5_terminated),
                    ("truncated", truncated[0] == v5_truncated),
                    ("frame", info["episode_frame_number"][0] == v5_info["episode_frame_number"]),
                ]
                if not same
            ]
            ended = v5_terminated or v5_truncated
            if differs:
                where = "the terminal step" if ended else "a mid-episode step"
                return f"step {t} ({where}, frame {v5_info['episode_frame_number']}) differs in {', '.join(differs)}"
            if ended:
                return f"identical for the whole episode ({t + 1} steps)"
        return f"identical for {max_steps} steps"
    finally:
        vector.close()
        v5.close()


def main() -> None:
    args = parse_args()
    for game in args.games.split(","):
        for seed in range(args.seeds):
            print(f"{game:>16} seed {seed:>3}: {compare(game.strip(), seed, args.max_steps)}")


if __name__ == "__main__":
    main()
