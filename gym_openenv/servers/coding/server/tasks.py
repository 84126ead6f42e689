"""Coding problems with hidden tests, read from ``gym_openenv/servers/coding/tasks/*.json``.

A task file holds ``id``, ``title``, ``prompt``, ``entry_point`` (the function the
solution defines), ``reference_solution`` (for our tests) and ``tests``: a list of
``{"args": [...], "expected": ...}`` with JSON values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["CodingTask", "HiddenTest", "load_tasks", "outputs_match"]

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


@dataclass(frozen=True)
class HiddenTest:
    args: list[Any]
    expected: Any


@dataclass(frozen=True)
class CodingTask:
    id: str
    title: str
    prompt: str
    entry_point: str
    reference_solution: str
    tests: tuple[HiddenTest, ...]

    def statement(self) -> str:
        """What the agent reads at reset."""
        return (
            f"{self.title}\n\n{self.prompt}\n\n"
            f"Submit Python source that defines `{self.entry_point}`; it is graded on "
            f"{len(self.tests)} hidden tests (reward = fraction passed)."
        )


@cache
def load_tasks(folder: Path = TASKS_DIR) -> dict[str, CodingTask]:
    """Every task in ``folder`` by id, in id order."""
    tasks = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        tests = tuple(HiddenTest(args=case["args"], expected=case["expected"]) for case in data.pop("tests"))
        task = CodingTask(tests=tests, **data)
        if task.id != path.stem:
            raise ValueError(f"{path}: id {task.id!r} must match the file name")
        tasks[task.id] = task
    return tasks


def outputs_match(value: Any, expected: Any) -> bool:
    """Equality of JSON values, with float tolerance and bools kept apart from ints."""
    if isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    if isinstance(expected, float) or isinstance(value, float):
        return (
            isinstance(value, (int, float))
            and isinstance(expected, (int, float))
            and math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9)
        )
    if isinstance(expected, list):
        return isinstance(value, list) and len(value) == len(expected) and all(map(outputs_match, value, expected))
    if isinstance(expected, dict):
        return (
            isinstance(value, dict)
            and value.keys() == expected.keys()
            and all(outputs_match(value[k], expected[k]) for k in expected)
        )
    return type(value) is type(expected) and value == expected
