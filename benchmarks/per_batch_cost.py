"""The vector env's client cost per batch for small batches, this checkout against a git revision.

For small batches the client's fixed Python/numpy work per ``send``/``recv``
(action checks, request bookkeeping, assembling the batch and its info) is a
large share of a step. This prints, for ``gym.make_vec`` on Atari Pong
(n = 1, 4, 8) and echo (n = 1, 16, 64), the client CPU time per batch
(``time.process_time`` of this process around the steps: the servers run in
other processes) and steps/s, for this checkout and for ``--baseline`` (a git
revision, exported with ``git archive`` and imported through ``PYTHONPATH``,
servers included), in interleaved windows of the same run; the best window
of each counts.

    python benchmarks/per_batch_cost.py                      # against HEAD
    python benchmarks/per_batch_cost.py --baseline 8928360 --steps 2000
    python benchmarks/per_batch_cost.py --profile atari 1    # cProfile of this checkout's client

Columns: client us per batch (baseline, now, ratio) and steps/s (baseline, now, ratio).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [("atari", 1), ("atari", 4), ("atari", 8), ("echo", 1), ("echo", 16), ("echo", 64)]
REPO = Path(__file__).resolve().parent.parent


def make(kind: str, n: int):
    import gymnasium as gym
    import numpy as np

    import gym_openenv  # noqa: F401  (registers the ids)

    if kind == "atari":
        envs = gym.make_vec("openenv/atari-v0", num_envs=n, game="pong")
        rng = np.random.default_rng(0)
        actions = [rng.integers(0, envs.single_action_space.n, n) for _ in range(64)]
    else:
        envs = gym.make_vec("openenv/echo-v0", num_envs=n)
        actions = [("hello",) * n] * 64
    return envs, actions


def measure(kind: str, n: int, steps: int, windows: int) -> list[dict]:
    """Each window: client CPU us per batch and steps/s over ``steps`` steps."""
    envs, actions = make(kind, n)
    try:
        envs.reset(seed=0)
        for i in range(50):
            envs.step(actions[i % 64])
        results = []
        for _ in range(windows):
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(steps):
                envs.step(actions[i % 64])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            results.append({"cpu_us": cpu / steps * 1e6, "steps_per_s": steps * n / wall})
        return results
    finally:
        envs.close()


def run(pythonpath: str | None, kind: str, n: int, steps: int, windows: int) -> list[dict]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(n), "--steps", str(steps), "--windows", str(windows)],
        env=env, capture_output=True, text=True, timeout=1800, check=True, cwd=pythonpath or REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile(kind: str, n: int, steps: int) -> None:
    import cProfile
    import pstats

    envs, actions = make(kind, n)
    try:
        envs.reset(seed=0)
        for i in range(50):
            envs.step(actions[i % 64])
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(steps):
            envs.step(actions[i % 64])
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--steps", type=int, default=1000, help="steps per window")
    parser.add_argument("--windows", type=int, default=2, help="windows per process")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved baseline/now rounds")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", nargs=2, metavar=("KIND", "N"), help="cProfile this checkout's client")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.steps, args.windows)))
        return
    if args.profile:
        profile(args.profile[0], int(args.profile[1]), args.steps)
        return
    with tempfile.TemporaryDirectory() as baseline_dir:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "gym_openenv"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", baseline_dir], input=archive.stdout, check=True)
        print(f"{'case':<10} {'client us/batch: ' + args.baseline[:10]:>28} {'now':>8} {'ratio':>6}   {'steps/s: base':>14} {'now':>8} {'ratio':>6}")
        for kind, n in CASES:
            best = {"base": [], "now": []}
            for _ in range(args.rounds):
                best["base"] += run(baseline_dir, kind, n, args.steps, args.windows)
                best["now"] += run(None, kind, n, args.steps, args.windows)
            cpu = {k: min(w["cpu_us"] for w in v) for k, v in best.items()}
            sps = {k: max(w["steps_per_s"] for w in v) for k, v in best.items()}
            print(
                f"{kind + ' n=' + str(n):<10} {cpu['base']:>28.0f} {cpu['now']:>8.0f} {cpu['now'] / cpu['base']:>6.2f}"
                f"   {sps['base']:>14.0f} {sps['now']:>8.0f} {sps['now'] / sps['base']:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
