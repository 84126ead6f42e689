"""Training through servers learns exactly what training natively learns.

SB3 PPO on CartPole-v1 twice with the same seed: once through
``gym.make_vec("openenv/gym-v0")`` (real server processes, ``SB3VecEnv``)
and once on ``gym.make("CartPole-v1")`` in SB3's ``DummyVecEnv``. The
learning curves are identical, episode for episode, not just close: env i is
seeded with ``seed + i`` on both sides and carries its RNG across autoresets,
float32 observations and rewards cross the wire bit-exactly, SB3 seeds torch,
numpy and the action space the same way, and torch on one CPU thread is
deterministic. Any difference would mean the remote environment is not the
native one.
"""

import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

import gym_openenv  # noqa: F401  (registers openenv/gym-v0)
from gym_openenv.integrations.sb3 import SB3VecEnv, make_sb3_vec_env

GYM_ID = "openenv/gym-v0"
SEED = 0
NUM_ENVS = 4
TOTAL_TIMESTEPS = 8192
#: A random CartPole policy averages about 22 steps per episode.
RANDOM_RETURN = 22.0


class EpisodeReturns(BaseCallback):
    def __init__(self):
        super().__init__()
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        self.returns += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        return True


def train(venv: VecEnv) -> tuple[list[float], float, np.ndarray]:
    """(episode returns, seconds, policy parameters) of a small RL-Zoo-style PPO run."""
    torch.set_num_threads(1)
    venv = VecMonitor(venv)
    model = PPO(
        "MlpPolicy", venv, n_steps=32, batch_size=128, n_epochs=10, learning_rate=1e-3,
        gamma=0.98, gae_lambda=0.8, seed=SEED, device="cpu",
    )
    episodes = EpisodeReturns()
    start = time.perf_counter()
    try:
        model.learn(TOTAL_TIMESTEPS, callback=episodes)
    finally:
        venv.close()
    parameters = torch.cat([p.detach().flatten() for p in model.policy.parameters()]).numpy()
    return episodes.returns, time.perf_counter() - start, parameters


def test_ppo_cartpole_through_servers_equals_native():
    threads = torch.get_num_threads()
    try:
        native_returns, native_seconds, native_params = train(
            DummyVecEnv([lambda: gym.make("CartPole-v1") for _ in range(NUM_ENVS)])
        )
        remote_returns, remote_seconds, remote_params = train(make_sb3_vec_env(GYM_ID, NUM_ENVS, monitor=False))
    finally:
        torch.set_num_threads(threads)
    print(
        f"\nPPO CartPole {TOTAL_TIMESTEPS} steps x {NUM_ENVS} envs: native {native_seconds:.1f}s, "
        f"openenv/gym-v0 {remote_seconds:.1f}s (x{remote_seconds / native_seconds:.2f}), {len(native_returns)} episodes"
    )
    assert remote_returns == native_returns  # the whole learning curve, episode by episode
    assert np.array_equal(remote_params, native_params)  # hence the same policy
    first, last = np.mean(native_returns[:20]), np.mean(native_returns[-10:])
    assert first < 2 * RANDOM_RETURN  # it starts out random...
    assert last > 5 * RANDOM_RETURN, f"PPO did not learn: the last 10 episodes average {last:.1f}"  # ...and learns


def test_sb3_adapter_explains_the_autoreset_mode_it_needs():
    envs = gym.make_vec(GYM_ID, num_envs=2, num_servers=1)  # NEXT_STEP, gymnasium's default
    try:
        with pytest.raises(ValueError, match="make_sb3_vec_env"):
            SB3VecEnv(envs)
    finally:
        envs.close()
    with pytest.raises(ValueError, match="SAME_STEP"):
        make_sb3_vec_env(GYM_ID, 2, autoreset_mode=AutoresetMode.NEXT_STEP)
