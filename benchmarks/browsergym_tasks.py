"""Every MiniWoB++ task page on the BrowserGym server: does it open, reset and step?

For each task of the ``miniwob`` package: a fresh session, ``reset(seed=0)``
(timed, page load included), a second reset on the same page (timed), and a
``noop(0)`` step. A task fails when any of these raises, the goal or page text
is empty, or the step reports an action error.

Run:
    python benchmarks/browsergym_tasks.py                     # all 130 tasks, about 2-3 minutes
    python benchmarks/browsergym_tasks.py --tasks miniwob.click-test,miniwob.enter-text

Writes benchmarks/results/browsergym_tasks.json and prints the failures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gym_openenv.servers.browsergym.models import BrowserGymAction
from gym_openenv.servers.browsergym.server.environment import BrowserGymEnvironment
from gym_openenv.servers.browsergym.server.miniwob import list_tasks

RESULTS = Path(__file__).parent / "results"


def check_task(task: str) -> dict[str, object]:
    env = BrowserGymEnvironment(task=task)
    row: dict[str, object] = {"task": task}
    try:
        start = time.perf_counter()
        first = env.reset(seed=0)
        row["open_and_reset_ms"] = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        env.reset(seed=1)
        row["reset_ms"] = (time.perf_counter() - start) * 1000
        step = env.step(BrowserGymAction(action_str="noop(0)"))
        row["goal"] = first.goal
        row["elements"] = len(first.text.splitlines())
        if not first.goal or not first.text.strip():
            row["error"] = "empty goal or page text"
        elif step.error:
            row["error"] = step.error
    except (RuntimeError, ValueError) as err:  # BrowserFailure is a RuntimeError
        row["error"] = f"{type(err).__name__}: {err}"
    finally:
        env.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="", help="comma-separated task ids (default: every task)")
    parser.add_argument("--out", default=str(RESULTS / "browsergym_tasks.json"))
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t] or list_tasks()
    rows = [check_task(task) for task in tasks]
    failed = [row for row in rows if "error" in row]
    ok = [row for row in rows if "error" not in row]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"tasks": rows, "failed": [r["task"] for r in failed]}, indent=2))
    if ok:
        opens = sorted(float(r["open_and_reset_ms"]) for r in ok)
        resets = sorted(float(r["reset_ms"]) for r in ok)
        print(f"{len(ok)}/{len(rows)} tasks work; median open+reset {opens[len(opens) // 2]:.0f} ms, reset {resets[len(resets) // 2]:.0f} ms")
    for row in failed:
        print(f"FAILED {row['task']}: {row['error']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
