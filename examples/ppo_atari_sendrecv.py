"""PPO on Atari served by openenv/atari-v0, overlapping inference with stepping (CleanRL style).

    python examples/ppo_atari_sendrecv.py                              # 20k steps: a demo, not a trained agent
    python examples/ppo_atari_sendrecv.py --total-timesteps 10000000   # CleanRL's budget for Breakout

The vector env's envpool-style ``send``/``recv`` keep the servers busy while
the network thinks: the envs are split in two halves, and while one half
steps on the servers the policy runs on the other half's observations
(``send(actions, env_ids=half)`` returns at once; ``recv()`` collects the
oldest send, ``info["env_id"]`` says whose results they are).

Preprocessing, and how it differs from SB3's ``AtariWrapper``:

* on the server (``gym.make_vec`` arguments): ALE v5's settings, i.e. 4 frames
  per step and sticky actions (p=0.25) as the source of randomness, and
  ``obs_type="grayscale"``, so a third of the bytes cross the wire;
* in this script, on the whole batch: resize to 84x84 (area averaging), stack
  the last 4 frames, clip rewards to their sign for training (returns are
  logged unclipped);
* not done: no-op starts, fire-on-reset, end-of-life episodes and the max over
  the last two frames. They are per-env stateful wrappers that cannot wrap a
  remote vector env; sticky actions replace no-op starts (Machado et al.,
  2018), and the agent learns to press FIRE itself.

Episode returns are logged as they end and plotted to
``examples/results/ppo_atari_sendrecv.png``.
"""

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from plotting import plot_returns as plot  # shared by the example scripts (examples/ on sys.path)
from args import parse_args as parse_dataclass_args  # shared by the example scripts (examples/ on sys.path)


@dataclass
class Args:
    env_id: str = "openenv/atari-v0"
    """the gymnasium id of the server-backed Atari environment"""
    game: str = "breakout"
    """the ALE game"""
    seed: int = 1
    """seed of the environments (env i gets seed + i), torch and numpy"""
    num_envs: int = 8
    """parallel environments, stepped in two halves of num_envs / 2"""
    total_timesteps: int = 20_000
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
    clip_coef: float = 0.1
    """PPO's clipping of the probability ratio"""
    ent_coef: float = 0.01
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    frame_stack: int = 4
    """frames the policy sees at once"""
    torch_threads: int = 0
    """torch CPU threads (0: torch's default)"""
    plot: str = str(Path(__file__).resolve().parent / "results" / "ppo_atari_sendrecv.png")
    """where to write the plot of episode returns"""


def parse_args() -> Args:
    args = parse_dataclass_args(Args, __doc__.splitlines()[0])
    if args.num_envs < 2 or args.num_envs % 2:
        print(f"{sys.argv[0]}: error: --num-envs must be even and at least 2 (two halves), got {args.num_envs}", file=sys.stderr)
        raise SystemExit(2)  # argparse's exit status for bad arguments
    return args


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """The Nature DQN torso with a policy and a value head."""

    def __init__(self, frame_stack: int, num_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(frame_stack, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, num_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.network(x / 255.0)).squeeze(-1)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        hidden = self.network(x / 255.0)
        dist = Categorical(logits=self.actor(hidden))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(hidden).squeeze(-1)


class FrameStacker:
    """The last ``k`` 84x84 frames of every env, updated a batch of envs at a time."""

    def __init__(self, num_envs: int, k: int):
        self.frames = torch.zeros((num_envs, k, 84, 84), dtype=torch.uint8)

    def push(self, screens: np.ndarray, env_ids: np.ndarray, new_episode: torch.Tensor) -> torch.Tensor:
        """Add the (m, 210, 160) grayscale screens of ``env_ids``; a new episode starts from a full stack of its first frame."""
        small = F.interpolate(torch.from_numpy(screens).float().unsqueeze(1), size=(84, 84), mode="area")
        small = small.round().to(torch.uint8)
        ids = torch.as_tensor(env_ids)
        stacked = torch.cat([self.frames[ids, 1:], small], dim=1)
        stacked[new_episode] = small[new_episode].expand(-1, self.frames.shape[1], -1, -1)
        self.frames[ids] = stacked
        return stacked.float()



if __name__ == "__main__":
    args = parse_args()
    batch_size = args.num_envs * args.num_steps
    num_iterations = max(1, args.total_timesteps // batch_size)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    # env setup: one vector env over server sessions; autoreset NEXT_STEP (gymnasium's default)
    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, game=args.game, obs_type="grayscale")
    halves = np.split(np.arange(args.num_envs), 2)
    agent = Agent(args.frame_stack, int(envs.single_action_space.n))
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    stacker = FrameStacker(args.num_envs, args.frame_stack)

    # rollout storage, indexed [step, env]
    obs = torch.zeros((args.num_steps, args.num_envs, args.frame_stack, 84, 84), dtype=torch.uint8)
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    terminated = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))
    valid = torch.zeros((args.num_steps, args.num_envs), dtype=torch.bool)  # False on autoreset steps

    global_step, episode_returns, start_time = 0, [], time.time()
    running_return = np.zeros(args.num_envs)
    screens, _ = envs.reset(seed=args.seed)
    ended = torch.zeros(args.num_envs, dtype=torch.bool)  # the env's last step ended its episode
    next_obs = stacker.push(screens, np.arange(args.num_envs), torch.ones(args.num_envs, dtype=torch.bool))

    def act_and_send(step: int, half: np.ndarray) -> None:
        """Pick actions for ``half`` at ``step`` and send them; returns while the servers step."""
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(next_obs[half])
        obs[step, half], valid[step, half] = next_obs[half].to(torch.uint8), ~ended[half]
        actions[step, half], logprobs[step, half], values[step, half] = action, logprob, value
        envs.send(action.numpy(), env_ids=half)

    for iteration in range(1, num_iterations + 1):
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        # Rollout: both halves in flight; while one steps, the policy runs on the other.
        for half in halves:
            act_and_send(0, half)
        for step in range(args.num_steps):
            for half in halves:
                screens, reward, term, trunc, info = envs.recv()  # the oldest send: this half
                assert np.array_equal(info["env_id"], half)
                global_step += len(half)
                rewards[step, half] = torch.as_tensor(np.sign(reward), dtype=torch.float32)
                terminated[step, half] = torch.as_tensor(term, dtype=torch.float32)
                dones[step, half] = torch.as_tensor(term | trunc, dtype=torch.float32)
                next_obs[half] = stacker.push(screens, half, ended[half])
                ended[half] = torch.as_tensor(term | trunc)
                running_return[half] += reward
                for env in half[term | trunc]:
                    episode_returns.append(float(running_return[env]))
                    print(f"global_step={global_step}, env={env}, episodic_return={running_return[env]:.0f}")
                    running_return[env] = 0.0
                if step + 1 < args.num_steps:
                    act_and_send(step + 1, half)

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
        b_obs = obs.reshape(-1, args.frame_stack, 84, 84)[keep]
        b_actions, b_logprobs = actions.reshape(-1)[keep], logprobs.reshape(-1)[keep]
        b_advantages, b_returns = advantages.reshape(-1)[keep], returns.reshape(-1)[keep]

        # optimize the policy and value network
        for epoch in range(args.update_epochs):
            for mb in torch.randperm(len(b_obs)).chunk(args.num_minibatches):  # rollouts vary in size
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb].float(), b_actions[mb])
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
    plot(episode_returns, f"PPO (send/recv), {args.env_id} ({args.game})", args.plot)
    print(f"plot: {args.plot}")
