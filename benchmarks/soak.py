"""Soak: a million echo steps through make_vec, checking memory and step accounting.

Every env's server-side step counter (echo's ``info["step"]``) must advance by
exactly one per client step: no lost or duplicated steps end to end. Client and
server RSS are sampled at the start and the end.

    python -m benchmarks.soak                     # 1,000,000 steps
    python -m benchmarks.soak --steps 100000      # shorter
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import psutil
from tqdm import tqdm

import gym_openenv  # noqa: F401
from benchmarks.harness import write_results


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="total env steps")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--episode", type=int, default=1000, help="echo max_steps (episodes end and autoreset)")
    args = parser.parse_args()
    n = args.num_envs
    envs = gym.make_vec("openenv/echo-v0", num_envs=n, max_steps=args.episode)
    me = psutil.Process().pid
    servers = [p.pid for p in envs._providers]
    envs.reset(seed=0)
    actions = tuple(f"m{i}" for i in range(n))
    expected = np.zeros(n, dtype=np.int64)  # server step counter we expect next
    lost = duplicated = 0
    warm_rounds = 200
    for _ in range(warm_rounds):  # let allocators settle before the first sample
        envs.step(actions)
    envs.reset(seed=1)
    start = {"client": rss_mib(me), **{f"server{k}": rss_mib(p) for k, p in enumerate(servers)}}
    rounds = args.steps // n
    began = time.perf_counter()
    for _ in tqdm(range(rounds), desc="soak", unit_scale=n, unit="step"):
        obs, _, terminated, truncated, info = envs.step(actions)
        stepped = info.get("_step", np.zeros(n, dtype=bool))  # real steps, not autoreset rows
        got = np.where(stepped, info.get("step", 0), 0)
        want = np.where(stepped, expected + 1, 0)
        lost += int(np.sum(got > want))
        duplicated += int(np.sum(got < want))
        expected = np.where(stepped, got, 0)  # an autoreset row starts a new episode at 0
        if any(o != a for o, a, s in zip(obs, actions, stepped) if s):
            raise AssertionError("an observation did not echo its own env's message")
    elapsed = time.perf_counter() - began
    end = {"client": rss_mib(me), **{f"server{k}": rss_mib(p) for k, p in enumerate(servers)}}
    envs.close()
    total = rounds * n
    print(f"{total:,} steps in {elapsed:.0f} s ({total / elapsed:,.0f} steps/s); lost {lost}, duplicated {duplicated}")
    for key in start:
        print(f"  RSS {key:>8}: {start[key]:7.1f} MiB -> {end[key]:7.1f} MiB ({end[key] - start[key]:+.1f})")
    write_results("soak", vars(args), [{"steps": total, "seconds": elapsed, "lost": lost, "duplicated": duplicated, "rss_start": start, "rss_end": end}])
    if lost or duplicated:
        raise SystemExit("step accounting failed")


if __name__ == "__main__":
    main()
