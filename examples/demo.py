"""Make openenv/atari-v0 through Gymnasium, step it, print what happened.

    python examples/demo.py

The environment runs in a server process started for it (the local provider);
the spaces are exactly those of ALE/Pong-v5.
"""

import gymnasium as gym
import numpy as np

import gym_openenv  # noqa: F401  (registers openenv/* ids)

env = gym.make("openenv/atari-v0", game="pong")
print("action space:", env.action_space, "| observation space:", env.observation_space)
obs, info = env.reset(seed=0)
total, steps = 0.0, 0
rng = np.random.default_rng(0)
for steps in range(1, 301):
    obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
    total += reward
    if terminated or truncated:
        break
print(f"{steps} steps of Pong with random actions: return {total:+.0f}, frame {info['frame_number']}, "
      f"last screen {obs.shape} {obs.dtype}, mean pixel {obs.mean():.1f}")
env.close()
