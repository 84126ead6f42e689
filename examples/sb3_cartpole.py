"""Train Stable-Baselines3 PPO on CartPole served by openenv/gym-v0.

    python examples/sb3_cartpole.py                           # 8k steps, well under a minute
    python examples/sb3_cartpole.py --total-timesteps 50000   # solves it (returns near 500)
    python examples/sb3_cartpole.py --native                  # the same run on gym.make("CartPole-v1")

The environments run in server processes; ``gym.make_vec`` returns one
batched vector env over all of them, and ``make_sb3_vec_env`` hands it to SB3 (no
``SubprocVecEnv``). SB3 resets finished episodes in the same step, so the
vector env is made with ``AutoresetMode.SAME_STEP``. With the same seed the
run is step-for-step the native one: same episodes, same returns, same policy.
Episode returns are logged by SB3's ``VecMonitor`` and plotted to
``examples/results/sb3_cartpole.png`` (``--plot``).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from gym_openenv.integrations.sb3 import make_sb3_vec_env
from plotting import plot_returns as plot  # shared by the example scripts (examples/ on sys.path)
from args import parse_args as parse_dataclass_args  # shared by the example scripts (examples/ on sys.path)


@dataclass
class Args:
    env_id: str = "openenv/gym-v0"
    """the gymnasium id of the server-backed environment"""
    gym_env: str = "CartPole-v1"
    """the Gymnasium environment the server runs"""
    native: bool = False
    """train on gym.make(gym_env) in SB3's DummyVecEnv instead, for comparison"""
    seed: int = 0
    """seed of the environments (env i gets seed + i) and of PPO"""
    num_envs: int = 4
    """parallel environments (sessions on the servers, stepped in one message per server)"""
    total_timesteps: int = 8192
    """training steps over all environments"""
    n_steps: int = 32
    """steps per environment between PPO updates"""
    batch_size: int = 128
    """minibatch size"""
    n_epochs: int = 10
    """passes over each rollout"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    gamma: float = 0.98
    """discount factor"""
    gae_lambda: float = 0.8
    """GAE lambda (these PPO settings are RL Zoo's for CartPole-v1)"""
    torch_threads: int = 1
    """torch CPU threads (a tiny MLP runs fastest, and reproducibly, on one)"""
    plot: str = str(Path(__file__).resolve().parent / "results" / "sb3_cartpole.png")
    """where to write the plot of episode returns"""


def parse_args() -> Args:
    return parse_dataclass_args(Args, __doc__.splitlines()[0])


class EpisodeReturns(BaseCallback):
    """Every episode return VecMonitor reports, in order (its buffer keeps only 100)."""

    def __init__(self):
        super().__init__()
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        self.returns += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        return True


def make_venv(args: Args) -> VecEnv:
    if args.native:
        return DummyVecEnv([lambda: gym.make(args.gym_env) for _ in range(args.num_envs)])
    return make_sb3_vec_env(args.env_id, args.num_envs, env_id=args.gym_env, monitor=False)



if __name__ == "__main__":
    args = parse_args()
    torch.set_num_threads(args.torch_threads)
    venv = VecMonitor(make_venv(args))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        seed=args.seed,
        device="cpu",
    )
    episodes = EpisodeReturns()
    start = time.perf_counter()
    model.learn(args.total_timesteps, callback=episodes)
    seconds = time.perf_counter() - start
    venv.close()
    where = f"gym.make({args.gym_env!r})" if args.native else f"{args.env_id} ({args.gym_env})"
    last = episodes.returns[-10:]
    print(f"{where}: {args.total_timesteps} steps in {seconds:.1f}s, {len(episodes.returns)} episodes, "
          f"mean return of the last {len(last)}: {sum(last) / max(1, len(last)):.1f}")
    plot(episodes.returns, f"SB3 PPO, {where}", args.plot)
    print(f"plot: {args.plot}")
