"""Train Stable-Baselines3 PPO on openenv/finrl-v0, then trade the test years.

    python examples/finrl_ppo.py                          # ~2k steps, well under a minute
    python examples/finrl_ppo.py --total-timesteps 200000 --tickers AAPL MSFT JPM KO XOM WMT

The training environments run the 2010-2020 days (``split="train"``, one
year per episode from a seeded random start); the trained policy then trades
2021-2022 (``split="test"``) from its first day to its last, next to a
buy-and-hold baseline that spends the cash equally on the tickers on day one.
"""

import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from gym_openenv.integrations.sb3 import SB3VecEnv
from args import parse_args as parse_dataclass_args  # shared by the example scripts (examples/ on sys.path)


@dataclass
class Args:
    env_id: str = "openenv/finrl-v0"
    """the gymnasium id of the trading environment"""
    tickers: list[str] = field(default_factory=lambda: ["AAPL", "MSFT", "JPM", "KO", "XOM"])
    """which of the shipped S&P 500 stocks to trade"""
    seed: int = 1
    """seed of the environments and of PPO"""
    num_envs: int = 4
    """parallel training environments (sessions on one server, stepped in one message)"""
    total_timesteps: int = 2048
    """training steps over all environments"""
    n_steps: int = 128
    """steps per environment between PPO updates"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    hmax: int = 100
    """most shares traded per ticker per day"""
    cost_pct: float = 0.001
    """transaction cost on buys and sells, as a fraction of the traded value"""


def parse_args() -> Args:
    return parse_dataclass_args(Args, __doc__.splitlines()[0])


def env_kwargs(args: Args) -> dict:
    return {"tickers": args.tickers, "hmax": args.hmax, "buy_cost_pct": args.cost_pct, "sell_cost_pct": args.cost_pct}


def trade_test_split(args: Args, policy) -> tuple[float, str, str]:
    """Final portfolio value of ``policy(obs) -> action`` over the whole test split."""
    env = gym.make(args.env_id, split="test", episode_length=None, random_start=False, **env_kwargs(args))
    obs, info = env.reset(seed=args.seed)
    first_date = info["date"]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated
    env.close()
    return info["portfolio_value"], first_date, info["date"]


if __name__ == "__main__":
    args = parse_args()
    torch.set_num_threads(1)  # a small MLP: more threads only add contention on a busy machine
    # SB3 resets finished episodes within the step: the vector env autoresets SAME_STEP.
    train_envs = gym.make_vec(
        args.env_id, num_envs=args.num_envs, num_servers=1, autoreset_mode=AutoresetMode.SAME_STEP,
        split="train", **env_kwargs(args),
    )  # fmt: skip
    # Cash is ~1e6 and prices ~1e2: normalize observations and rewards for the network.
    envs = VecNormalize(SB3VecEnv(train_envs), gamma=0.99)
    envs.seed(args.seed)
    model = PPO(
        "MlpPolicy", envs, n_steps=args.n_steps, batch_size=64, learning_rate=args.learning_rate,
        seed=args.seed, verbose=0,
    )  # fmt: skip

    start = time.perf_counter()
    model.learn(total_timesteps=args.total_timesteps)
    seconds = time.perf_counter() - start
    print(f"trained {model.num_timesteps} steps in {seconds:.1f} s ({model.num_timesteps / seconds:.0f} steps/s)")

    def ppo(obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(envs.normalize_obs(obs), deterministic=True)
        return action

    n = len(args.tickers)
    first_day = [True]

    def buy_and_hold(obs: np.ndarray) -> np.ndarray:
        # Day one: spend the cash equally (fractions of hmax); then hold.
        if not first_day[0]:
            return np.zeros(n, np.float32)
        first_day[0] = False
        cash, prices = obs[0], obs[1 : 1 + n]
        shares = cash / n / (prices * (1 + args.cost_pct))
        return np.clip(shares / args.hmax, 0.0, 1.0).astype(np.float32)

    ppo_value, first, last = trade_test_split(args, ppo)
    hold_value, _, _ = trade_test_split(args, buy_and_hold)
    print(f"test split {first} .. {last}, starting with 1,000,000:")
    print(f"  PPO           {ppo_value:14,.2f}")
    print(f"  buy and hold  {hold_value:14,.2f}  (at most hmax={args.hmax} shares per ticker)")
    envs.close()
