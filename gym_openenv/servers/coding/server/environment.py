"""Coding: each step runs the agent's Python in a bubblewrap sandbox.

Free-form (``task=None``): the code runs as a script in ``/workspace`` (files
persist until reset); the observation is its stdout/stderr and a line saying how
it ended; reward is 0. Task mode (``task="<id>"`` or ``"random"``): reset gives a
problem statement; each step submits a solution, graded on hidden tests whose
expected outputs never enter the sandbox; reward = fraction passed; the episode
ends when all pass or after ``max_attempts`` submissions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import signal
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gym_openenv.server import Environment, EnvironmentMetadata
from gym_openenv.servers._sandbox import Execution, Sandbox, SandboxLimits, SandboxProcess
from gym_openenv.servers.coding.models import CodeAction, CodeObservation, CodeState
from gym_openenv.servers.coding.server.harness import RESULTS_MARKER
from gym_openenv.servers.coding.server.tasks import CodingTask, load_tasks, outputs_match

__all__ = ["CodingEnvironment"]

_HARNESS = Path(__file__).with_name("harness.py")
_FREE_FORM = (
    "Python sandbox: each step runs `code` as a script (python3, cwd /workspace, no network). "
    "Files in /workspace persist until reset."
)


class CodingEnvironment(Environment[CodeAction, CodeObservation, CodeState]):
    """Run Python in a sandbox, free-form or against a task's hidden tests.

    Args:
        task: None (free-form), a task id from ``gym_openenv/servers/coding/tasks/``, or "random"
            (a task drawn at each reset, seeded by ``reset(seed=...)``).
        max_attempts: submissions per task episode.
        max_timeout: cap on ``CodeAction.timeout`` (seconds).
        memory_mb: memory budget of the whole sandbox, its processes and files together
            (a cgroup; where none can be made, an address-space limit per process).
        max_processes: process/thread budget of the sandbox.
        workspace_mb: size of ``/workspace`` (a tmpfs where the server may mount one).
    """

    action_type = CodeAction
    observation_type = CodeObservation
    state_type = CodeState

    def __init__(
        self,
        task: str | None = None,
        max_attempts: int = 3,
        max_timeout: float = 60.0,
        memory_mb: int = 1024,
        max_processes: int = 64,
        workspace_mb: int = 256,
    ):
        self._tasks = load_tasks()
        if task is not None and task != "random" and task not in self._tasks:
            raise ValueError(f"task must be None, 'random' or one of {sorted(self._tasks)}; got {task!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not max_timeout > 0:
            raise ValueError(f"max_timeout must be > 0, got {max_timeout}")
        self.task = task
        self.max_attempts = max_attempts
        self.max_timeout = float(max_timeout)
        self._limits = SandboxLimits(memory_bytes=memory_mb << 20, max_processes=max_processes, workspace_bytes=workspace_mb << 20)
        self._sandbox = Sandbox(self._limits)
        self._sandbox.add_runtime_file("harness.py", _HARNESS.read_text())
        self._rng = random.Random()
        self._current: CodingTask | None = None
        self._state = CodeState()

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> CodeObservation:
        if seed is not None:
            self._rng.seed(seed)
        self._sandbox.clear_workspace()
        self._current = self._pick_task()
        task_id = self._current.id if self._current else None
        self._state = CodeState(episode_id=episode_id or uuid.uuid4().hex, task_id=task_id)
        if self._current is None:
            return CodeObservation(message=_FREE_FORM, reward=0.0)
        cases = [{"args": test.args} for test in self._current.tests]
        self._sandbox.add_runtime_file("cases.json", json.dumps(cases))
        return CodeObservation(message=self._current.statement(), reward=0.0, task_id=task_id)

    def _pick_task(self) -> CodingTask | None:
        if self.task is None:
            return None
        if self.task == "random":
            return self._tasks[self._rng.choice(sorted(self._tasks))]
        return self._tasks[self.task]

    def step(self, action: CodeAction) -> CodeObservation:
        for observation in self.stream_step(action):
            pass
        return observation

    def stream_step(self, action: CodeAction) -> Iterator[CodeObservation]:
        """Yield the output so far while the program runs (``metadata["partial"]``), the result last."""
        timeout = self._timeout(action)
        run = self._start(action, timeout)
        try:
            for execution in run.stream(timeout):
                if not execution.finished:
                    stdout = execution.stdout.split(RESULTS_MARKER)[0]
                    yield CodeObservation(stdout=stdout, stderr=execution.stderr, reward=0.0, metadata={"partial": True})
        finally:
            run.close()
        yield self._result(execution)

    @classmethod
    def step_batch(cls, envs: Sequence[CodingEnvironment], actions: Sequence[CodeAction]) -> list[CodeObservation]:
        """Start every session's program, then collect each: the batch takes as long as its
        slowest run, not the sum. Each run's wall-clock limit counts from its own start."""
        timeouts = [env._timeout(action) for env, action in zip(envs, actions)]
        runs = []
        try:
            for env, action, timeout in zip(envs, actions, timeouts):
                runs.append((env, env._start(action, timeout), timeout))
            results = []
            for env, run, timeout in runs:
                for execution in run.stream(timeout, since=run.started):
                    pass
                run.close()
                results.append(env._result(execution))
            return results
        finally:
            for _, run, _ in runs:
                run.close()

    def _start(self, action: CodeAction, timeout: float) -> SandboxProcess:
        self._state.step_count += 1
        limits = dataclasses.replace(self._limits, cpu_seconds=math.ceil(timeout) + 1)
        if self._current is None:
            program = self._sandbox.add_runtime_file("main.py", action.code)
            command = [self._sandbox.python, "-u", program]
        else:
            self._state.attempts += 1
            solution = self._sandbox.add_runtime_file("solution.py", action.code)
            harness, cases = "/sandbox/harness.py", "/sandbox/cases.json"
            command = [self._sandbox.python, "-u", harness, solution, self._current.entry_point, cases]
        return self._sandbox.start(command, limits)

    def _timeout(self, action: CodeAction) -> float:
        timeout = float(action.timeout)
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"CodeAction.timeout must be a positive number of seconds, got {action.timeout!r}")
        return min(timeout, self.max_timeout)

    def _result(self, execution: Execution) -> CodeObservation:
        # No exit code: the sandbox killed the program (SIGKILL); report it as a shell would.
        exit_code = 128 + signal.SIGKILL if execution.exit_code is None else execution.exit_code
        self._state.last_exit_code = exit_code
        common = dict(
            stderr=execution.stderr,
            exit_code=exit_code,
            status=execution.status.value,
            task_id=self._state.task_id,
        )
        if self._current is None:
            message = execution.note or f"exited with code {exit_code}"
            return CodeObservation(stdout=execution.stdout, message=message, reward=0.0, **common)
        stdout, found, results = execution.stdout.rpartition(RESULTS_MARKER)
        if not found:  # the solution never got as far as the tests
            stdout, results = results, ""
        passed = self._count_passed(results)
        total = len(self._current.tests)
        message = f"{passed}/{total} hidden tests passed" + (f"; {execution.note}" if execution.note else "")
        done = passed == total or self._state.attempts >= self.max_attempts
        return CodeObservation(
            stdout=stdout.removesuffix("\n") if found else stdout,  # the harness wrote "\n" before the marker
            message=message,
            reward=passed / total,
            done=done,
            tests_passed=passed,
            tests_total=total,
            **common,
        )

    def _count_passed(self, results: str) -> int:
        """Compare the harness's result lines with the expected outputs the sandbox never saw."""
        passed = 0
        lines = [line for line in results.splitlines() if line.strip()]
        for test, line in zip(self._current.tests, lines):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # a cut-off or forged line passes nothing
            if isinstance(result, dict) and "value" in result and outputs_match(result["value"], test.expected):
                passed += 1
        return passed

    @property
    def state(self) -> CodeState:
        return self._state

    @property
    def sandbox(self) -> Sandbox:
        """The session's sandbox (its uid, workspace and processes), for inspection."""
        return self._sandbox

    def close(self) -> None:
        self._sandbox.close()

    def metadata(self) -> EnvironmentMetadata:
        return dataclasses.replace(super().metadata(), extra={"tasks": sorted(self._tasks), "streaming": True})
