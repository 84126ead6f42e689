"""PPO on CartPole served by openenv/gym-v0, in one file (CleanRL style, pure torch).

    python examples/ppo_cartpole.py                          # 40k steps, solves CartPole in a few minutes
    python examples/ppo_cartpole.py --total-timesteps 2048   # a smoke run

The environments run in server processes behind one batched vector env from
``gym.make_vec``; gymnasium's own ``RecordEpisodeStatistics`` vector wrapper
logs episode returns, plotted at the end to ``examples/results/ppo_cartpole.png``.

The vector env autoresets gymnasium's default way (``NEXT_STEP``): the step
after an episode ends only resets that env, and its action is ignored. Those
reset steps are masked out of the loss, and the observation they start from is
the episode's final one, so a truncated (time-limited) episode is bootstrapped
from the value of its true last state.
"""

import random
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym

import numpy as np
import torch
from gymnasium.wrappers.vector import RecordEpisodeStatistics
from torch import nn
from torch.distributions import Categorical

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from plotting import plot_returns as plot  # shared by the example scripts (examples/ on sys.path)
from args import parse_args as parse_dataclass_args  # shared by the example scripts (examples/ on sys.path)


@dataclass
class Args:
    env_id: str = "openenv/gym-v0"
    """the gymnasium id of the server-backed environment"""
    gym_env: str = "CartPole-v1"
    """the Gymnasium environment the server runs (any with Box observations and Discrete actions)"""
    seed: int = 1
    """seed of the environments (env i gets seed + i), torch and numpy"""
    num_envs: int = 4
    """parallel environments (sessions on the servers, stepped in one message per server)"""
    total_timesteps: int = 40_000
    """environment steps over all environments"""
    num_steps: int = 128
    """steps per environment in each rollout"""
    learning_rate: float = 2.5e-4
    """Adam learning rate, annealed linearly to 0"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 4
    """passes over each rollout"""
    clip_coef: float = 0.2
    """PPO's clipping of the probability ratio"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    torch_threads: int = 1
    """torch CPU threads (a tiny MLP runs fastest on one)"""
    plot: str = str(Path(__file__).resolve().parent / "results" / "ppo_cartpole.png")
    """where to write the plot of episode returns"""


def parse_args() -> Args:
    return parse_dataclass_args(Args, __doc__.splitlines()[0])


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_size: int, num_actions: int):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_size, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, num_actions), std=0.01),
        )

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        dist = Categorical(logits=self.actor(x))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.get_value(x)



if __name__ == "__main__":
    args = parse_args()
    batch_size = args.num_envs * args.num_steps
    num_iterations = max(1, args.total_timesteps // batch_size)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)

    # env setup: one vector env over server sessions, autoreset NEXT_STEP (gymnasium's default)
    envs = RecordEpisodeStatistics(gym.make_vec(args.env_id, num_envs=args.num_envs, env_id=args.gym_env))
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"--gym-env {args.gym_env} has {envs.single_action_space} actions; this script handles Discrete ones")
    obs_size = int(np.prod(envs.single_observation_space.shape))

    agent = Agent(obs_size, int(envs.single_action_space.n))
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    # rollout storage
    obs = torch.zeros((args.num_steps, args.num_envs, obs_size))
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    terminated = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))
    valid = torch.zeros((args.num_steps, args.num_envs), dtype=torch.bool)  # False on autoreset steps

    global_step, episode_returns, start_time = 0, [], time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32).reshape(args.num_envs, -1)
    ended = torch.zeros(args.num_envs, dtype=torch.bool)  # the last step ended the episode

    for iteration in range(1, num_iterations + 1):
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step], valid[step] = next_obs, ~ended
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value

            next_obs, reward, term, trunc, info = envs.step(action.numpy())
            next_obs = torch.as_tensor(next_obs, dtype=torch.float32).reshape(args.num_envs, -1)
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            terminated[step] = torch.as_tensor(term, dtype=torch.float32)
            ended = torch.as_tensor(term | trunc)
            dones[step] = ended.float()
            if "episode" in info:
                for r in info["episode"]["r"][info["_episode"]]:
                    episode_returns.append(float(r))
                    print(f"global_step={global_step}, episodic_return={r:.0f}")

        # GAE. With NEXT_STEP, the observation after an episode's last step is its
        # final observation: values of step t + 1 bootstrap a truncation at step t.
        with torch.no_grad():
            next_values = torch.cat([values[1:], agent.get_value(next_obs)[None]])
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                delta = rewards[t] + args.gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * (1.0 - dones[t]) * lastgaelam
                advantages[t] = lastgaelam
            returns = advantages + values

        # flatten the batch, keeping real transitions only (not autoreset steps)
        keep = valid.reshape(-1)
        b_obs = obs.reshape(-1, obs_size)[keep]
        b_actions, b_logprobs = actions.reshape(-1)[keep], logprobs.reshape(-1)[keep]
        b_advantages, b_returns, b_values = advantages.reshape(-1)[keep], returns.reshape(-1)[keep], values.reshape(-1)[keep]

        # optimize the policy and value network
        for epoch in range(args.update_epochs):
            for mb in torch.randperm(len(b_obs)).chunk(args.num_minibatches):  # rollouts vary in size
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                ratio = (newlogprob - b_logprobs[mb]).exp()
                mb_adv = b_advantages[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        print(f"iteration {iteration}/{num_iterations}: SPS={int(global_step / (time.time() - start_time))}, "
              f"value_loss={v_loss.item():.3f}, policy_loss={pg_loss.item():.3f}")

    envs.close()
    last = episode_returns[-10:]
    print(f"{len(episode_returns)} episodes, mean return of the last {len(last)}: {np.mean(last) if last else float('nan'):.1f}")
    plot(episode_returns, f"PPO (pure torch), {args.env_id} ({args.gym_env})", args.plot)
    print(f"plot: {args.plot}")
