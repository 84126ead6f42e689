"""Shared plumbing for the benchmark scripts: timing, results files, plots.

Every figure is a rate measured in the same run as its baseline, so ratios
stay meaningful on a noisy, shared machine.
"""

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def rate(step: Callable[[], Any], items_per_call: int, seconds: float, warmup: int = 3) -> float:
    """Calls of ``step`` per second times ``items_per_call``, over about ``seconds``."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * items_per_call / elapsed


def write_results(name: str, config: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    machine = {"python": platform.python_version(), "machine": platform.machine(), "cpus": __import__("os").cpu_count()}
    path.write_text(json.dumps({"config": config, "machine": machine, "rows": rows}, indent=2))
    return path


def plot_rates(name: str, title: str, rows: list[dict[str, Any]], x: str = "num_envs", y: str = "steps_per_s") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for contender in dict.fromkeys(r["contender"] for r in rows):
        points = sorted((r[x], r[y]) for r in rows if r["contender"] == contender and r.get(y))
        if points:
            ax.plot(*zip(*points), marker="o", label=contender)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(rows: list[dict[str, Any]], baseline: str, x: str = "num_envs", y: str = "steps_per_s") -> None:
    """One line per x: each contender's rate and its ratio to ``baseline``."""
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    print(f"{x:>9} " + " ".join(f"{c:>22}" for c in contenders))
    for value in sorted({r[x] for r in rows}):
        at = {r["contender"]: r.get(y) for r in rows if r[x] == value}
        base = at.get(baseline)
        cells = []
        for c in contenders:
            v = at.get(c)
            cells.append(f"{'-':>22}" if not v else f"{v:>12,.0f} ({v / base:5.2f}x)" if base else f"{v:>22,.0f}")
        print(f"{value:>9} " + " ".join(cells))
