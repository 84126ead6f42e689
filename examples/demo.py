"""Make an OpenEnv environment through Gymnasium, step it, print what happened.

    python examples/demo.py
"""

import gymnasium as gym

import gym_openenv  # noqa: F401  (registers openenv/* ids)

env = gym.make("openenv/echo-v0")
print("action space:", type(env.action_space).__name__, "observation space:", type(env.observation_space).__name__)
obs, info = env.reset(seed=0)
for message in ["hello", "from", "gymnasium"]:
    obs, reward, terminated, truncated, info = env.step(message)
    print(f"step {info['step']}: sent {message!r} -> observed {obs!r}, reward {reward:.1f}")
env.close()
