"""BrowserGym server: reset and step latency, and how many sessions one browser holds.

Three measurements on real headless Chromium with a MiniWoB++ task:

* ``latency``: one session in this process: the first reset (launches
  Chromium), the reset of a new session (new browser context and page load),
  a reset on a session's page (a new episode, the common case), a ``noop(0)``
  step (observation only: page text, screenshot, score) and a ``click`` step;
* ``sessions``: N sessions on the one shared browser, driven from N threads as
  the server's workers drive them: all reset, then each steps ``noop(0)``;
  aggregate steps/s, per-step latency and the browser's total memory;
* ``server``: one session through a real server process and ``OpenEnvEnv``
  (OpenEnv's JSON WebSocket: the screenshot travels as a JSON list), and a
  ``OpenEnvVectorEnv`` of ``--num-envs`` sessions on one server (batched
  msgpack: raw screenshot bytes), i.e. what a gymnasium user sees.

Run:
    python benchmarks/browsergym_latency.py                       # small budget
    python benchmarks/browsergym_latency.py --sessions 1,8,32,64 --steps 50

Writes benchmarks/results/browsergym_latency.{json,png}.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from gym_openenv.env import OpenEnvEnv
from gym_openenv.vector import OpenEnvVectorEnv
from gym_openenv.servers.browsergym.models import BrowserGymAction
from gym_openenv.servers.browsergym.server.browser import shared_browser
from gym_openenv.servers.browsergym.server.environment import BrowserGymEnvironment

RESULTS = Path(__file__).parent / "results"
ENVIRONMENT = "gym_openenv.servers.browsergym.server.environment:BrowserGymEnvironment"
NOOP = BrowserGymAction(action_str="noop(0)")


@dataclass
class Args:
    task: str = "miniwob.click-test"
    """MiniWoB++ task to time (click-test's button is solved by one click)"""
    repeats: int = 30
    """timed calls per latency kind"""
    sessions: str = "1,2,4,8,16,32"
    """session counts for the sessions-per-server sweep (comma-separated)"""
    steps: int = 20
    """noop steps per session in the sweep"""
    num_envs: int = 4
    """sessions in the vector env measured through the server"""
    out: str = str(RESULTS / "browsergym_latency")
    """output path without extension (.json and .png are written)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return Args(**vars(parser.parse_args()))


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Milliseconds that ``fn(*args, **kwargs)`` takes."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - start) * 1000


def summary(ms: list[float]) -> dict[str, float]:
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "n": len(ms)}


def button_bid(dom_text: str) -> str:
    line = next(line for line in dom_text.splitlines() if "] button " in line)
    return line.strip().split("]")[0].lstrip("[")


def browser_memory_mb() -> float:
    """Resident memory of every Chromium process this process started."""
    total = 0
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        # Renderers of closed pages may exit while we look; USS counts shared pages once.
        with contextlib.suppress(psutil.NoSuchProcess):
            if "chrom" in proc.name():
                total += proc.memory_full_info().uss
    return total / 2**20


def measure_latency(args: Args) -> dict[str, dict[str, float]]:
    results = {}
    env = BrowserGymEnvironment(task=args.task)
    results["first_reset_with_browser_launch"] = summary([timed(env.reset, seed=0)])
    new_sessions = []
    for i in range(min(args.repeats, 10)):
        other = BrowserGymEnvironment(task=args.task)
        new_sessions.append(timed(other.reset, seed=i))
        other.close()
    results["reset_new_session"] = summary(new_sessions)
    results["reset_same_session"] = summary([timed(env.reset, seed=i) for i in range(args.repeats)])
    env.reset(seed=0)
    results["step_noop"] = summary([timed(env.step, NOOP) for _ in range(args.repeats)])
    clicks = []
    for i in range(args.repeats):
        obs = env.reset(seed=i)
        action = BrowserGymAction(action_str=f'click("{button_bid(obs.text)}")')
        clicks.append(timed(env.step, action))
    results["step_click_solves_task"] = summary(clicks)
    env.close()
    return results


def measure_sessions(args: Args, count: int) -> dict[str, float]:
    # Resetting many sessions takes longer than MiniWoB's 10 s episodes; keep
    # every episode running so that each step does the full work.
    envs = [BrowserGymEnvironment(task=args.task, episode_max_time_ms=3_600_000) for _ in range(count)]
    step_ms: list[list[float]] = [[] for _ in envs]
    errors: list[str] = []

    def run(i: int, phase: str) -> None:
        try:
            if phase == "reset":
                envs[i].reset(seed=i)
            else:
                step_ms[i] = [timed(envs[i].step, NOOP) for _ in range(args.steps)]
        except Exception as err:  # noqa: BLE001 - a failing session is a measurement
            errors.append(f"{type(err).__name__}: {err}")

    def all_threads(phase: str) -> float:
        threads = [threading.Thread(target=run, args=(i, phase)) for i in range(count)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    reset_s = all_threads("reset")
    step_s = all_threads("step")
    memory = browser_memory_mb()
    for env in envs:
        env.close()
    flat = [ms for per in step_ms for ms in per]
    return {
        "sessions": count,
        "reset_all_s": reset_s,
        "steps_per_s": len(flat) / step_s if flat else 0.0,
        "step_median_ms": float(np.median(flat)) if flat else float("nan"),
        "step_p95_ms": float(np.percentile(flat, 95)) if flat else float("nan"),
        "browser_memory_mb": memory,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def measure_server(args: Args) -> dict[str, dict[str, float]]:
    env = OpenEnvEnv(environment=ENVIRONMENT, task=args.task)
    try:
        resets = [timed(env.reset, seed=i) for i in range(args.repeats)]
        steps = [timed(env.step, "noop(0)") for _ in range(args.repeats)]
    finally:
        env.close()
    vector = OpenEnvVectorEnv(ENVIRONMENT, num_envs=args.num_envs, task=args.task)
    try:
        vector.reset(seed=0)
        batch = [timed(vector.step, ("noop(0)",) * args.num_envs) for _ in range(args.repeats)]
    finally:
        vector.close()
    return {
        "reset": summary(resets),
        "step_noop": summary(steps),
        f"vector_{args.num_envs}_envs_batch_step_noop": summary(batch),
    }


def plot(sweep: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [row["sessions"] for row in sweep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(counts, [row["steps_per_s"] for row in sweep], "o-", label="aggregate steps/s")
    left.set_xlabel("sessions on one Chromium")
    left.set_ylabel("noop steps / s")
    left.set_xscale("log", base=2)
    right.plot(counts, [row["step_median_ms"] for row in sweep], "o-", label="median")
    right.plot(counts, [row["step_p95_ms"] for row in sweep], "s--", label="p95")
    right.set_xlabel("sessions on one Chromium")
    right.set_ylabel("step latency (ms)")
    right.set_xscale("log", base=2)
    right.legend()
    fig.suptitle("BrowserGym server: MiniWoB++ sessions sharing one browser")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    args = parse_args()
    latency = measure_latency(args)
    for kind, row in latency.items():
        print(f"{kind:34s} median {row['median_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms")
    sweep = []
    for count in (int(c) for c in args.sessions.split(",")):
        row = measure_sessions(args, count)
        sweep.append(row)
        print(
            f"{count:3d} sessions: reset all {row['reset_all_s']:.2f} s, {row['steps_per_s']:6.1f} steps/s, "
            f"step median {row['step_median_ms']:.1f} ms p95 {row['step_p95_ms']:.1f} ms, "
            f"browser {row['browser_memory_mb']:.0f} MB, errors {row['errors']}"
        )
    server = measure_server(args)
    for kind, row in server.items():
        print(f"server {kind:27s} median {row['median_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": dataclasses.asdict(args),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "browser_launches": shared_browser().launches,
        "latency": latency,
        "sessions": sweep,
        "server": server,
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    plot(sweep, out.with_suffix(".png"))
    shared_browser().close()
    print(f"wrote {out}.json and {out}.png")


if __name__ == "__main__":
    main()
