"""Train Stable-Baselines3 PPO on Atari served by openenv/atari-v0.

    python examples/sb3_atari.py                               # 4k steps: a smoke run, not a trained agent
    python examples/sb3_atari.py --total-timesteps 10000000    # RL Zoo's budget

SB3's ``AtariWrapper`` wraps one local ``gym.Env``; here the environments are
sessions behind one remote vector env, so the preprocessing is split:

* on the server (``gym.make_vec`` arguments): ALE v5's 4 frames per step and
  sticky actions (p=0.25), and ``obs_type="grayscale"`` so a third of the
  bytes cross the wire;
* on the client, on whole batches (SB3 ``VecEnv`` wrappers):
  ``VecAtariPreprocessing`` below (84x84 area resize, rewards clipped to
  their sign: what ``WarpFrame`` and ``ClipRewardEnv`` do), then SB3's
  ``VecFrameStack(4)`` and ``VecTransposeImage``;
* not done: no-op starts, fire-on-reset, end-of-life episodes and the max over
  the last two frames (``AtariWrapper``'s per-env state). Sticky actions
  replace no-op starts (Machado et al., 2018); the agent learns to press FIRE.

``VecMonitor`` sits before the reward clipping, so logged returns are the
game's scores; they are plotted to ``examples/results/sb3_atari.png``.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import (
    VecEnv,
    VecEnvWrapper,
    VecFrameStack,
    VecTransposeImage,
)

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from gym_openenv.integrations.sb3 import make_sb3_vec_env
from plotting import plot_returns as plot  # shared by the example scripts (examples/ on sys.path)
from args import parse_args as parse_dataclass_args  # shared by the example scripts (examples/ on sys.path)


@dataclass
class Args:
    env_id: str = "openenv/atari-v0"
    """the gymnasium id of the server-backed Atari environment"""
    game: str = "breakout"
    """the ALE game"""
    seed: int = 0
    """seed of the environments (env i gets seed + i) and of PPO"""
    num_envs: int = 8
    """parallel environments (sessions on the servers, stepped in one message per server)"""
    total_timesteps: int = 4096
    """training steps over all environments"""
    n_steps: int = 128
    """steps per environment between PPO updates"""
    batch_size: int = 256
    """minibatch size"""
    n_epochs: int = 4
    """passes over each rollout"""
    learning_rate: float = 2.5e-4
    """Adam learning rate"""
    clip_range: float = 0.1
    """PPO's clipping of the probability ratio"""
    torch_threads: int = 0
    """torch CPU threads (0: torch's default)"""
    plot: str = str(Path(__file__).resolve().parent / "results" / "sb3_atari.png")
    """where to write the plot of episode returns"""


def parse_args() -> Args:
    return parse_dataclass_args(Args, __doc__.splitlines()[0])


class VecAtariPreprocessing(VecEnvWrapper):
    """``WarpFrame`` and ``ClipRewardEnv`` for a whole batch: grayscale
    (m, 210, 160) screens become (m, 84, 84, 1) by area averaging; rewards
    become their sign."""

    def __init__(self, venv: VecEnv, size: int = 84):
        self.size = size
        super().__init__(venv, observation_space=spaces.Box(0, 255, (size, size, 1), np.uint8))

    def warp(self, screens: np.ndarray) -> np.ndarray:
        small = F.interpolate(torch.from_numpy(screens).float().unsqueeze(1), size=(self.size, self.size), mode="area")
        return small.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def reset(self) -> np.ndarray:
        return self.warp(self.venv.reset())

    def step_wait(self):
        screens, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:  # VecFrameStack stacks it too
                info["terminal_observation"] = self.warp(info["terminal_observation"][None])[0]
        return self.warp(screens), np.sign(rewards), dones, infos


class EpisodeReturns(BaseCallback):
    """Every episode return VecMonitor reports, in order (its buffer keeps only 100)."""

    def __init__(self):
        super().__init__()
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        self.returns += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        return True



if __name__ == "__main__":
    args = parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    # VecMonitor (make_sb3_vec_env's default) before reward clipping: logs the game's score.
    venv = make_sb3_vec_env(args.env_id, args.num_envs, game=args.game, obs_type="grayscale")
    venv = VecTransposeImage(VecFrameStack(VecAtariPreprocessing(venv), n_stack=4))
    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        clip_range=args.clip_range,
        ent_coef=0.01,
        vf_coef=0.5,
        seed=args.seed,
        device="cpu",
    )
    episodes = EpisodeReturns()
    start = time.perf_counter()
    model.learn(args.total_timesteps, callback=episodes)
    seconds = time.perf_counter() - start
    venv.close()
    last = episodes.returns[-10:]
    print(f"{args.env_id} ({args.game}): {args.total_timesteps} steps in {seconds:.1f}s, {len(episodes.returns)} episodes, "
          f"mean return of the last {len(last)}: {np.mean(last) if last else float('nan'):.1f}")
    plot(episodes.returns, f"SB3 PPO, {args.env_id} ({args.game})", args.plot)
    print(f"plot: {args.plot}")
