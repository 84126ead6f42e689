"""REPL: a persistent Python interpreter per session, in a bubblewrap sandbox.

Each step runs a cell in the same interpreter, so variables survive between
steps; reset starts a fresh interpreter. Task mode (``task="<id>"`` or
``"random"``) puts a long text in the variable ``context`` and asks a question;
the agent explores with code and answers with ``FINAL(answer)`` (a function in
the namespace, or a printed ``FINAL(...)`` line): reward 1 when right, and the
episode ends.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from gym_openenv.server import Environment, EnvironmentMetadata
from gym_openenv.servers._sandbox import ExecStatus, Execution, Sandbox, SandboxLimits
from gym_openenv.servers.repl.models import ReplAction, ReplObservation, ReplState
from gym_openenv.servers.repl.server.session import ReplSession
from gym_openenv.servers.repl.server.tasks import TASKS, ReplTask, answers_match

__all__ = ["ReplEnvironment"]

_FINAL_LINE = re.compile(r"^FINAL\((.*)\)\s*$", re.MULTILINE)
_FREE_FORM = (
    "Persistent Python interpreter (python3, cwd /workspace, no network): each step runs a cell; "
    "variables survive between steps; a trailing expression's value is printed."
)
#: Seconds allowed for loading a task's context into a fresh interpreter.
_CONTEXT_TIMEOUT = 30.0


class ReplEnvironment(Environment[ReplAction, ReplObservation, ReplState]):
    """A sandboxed Python REPL, free-form or with a question about a long ``context``.

    Args:
        task: None (free-form), a task id (see ``gym_openenv/servers/repl/server/tasks.py``) or "random".
        max_steps: steps per task episode before it is truncated (free-form sessions never end).
        max_timeout: cap on ``ReplAction.timeout`` (seconds).
        memory_mb: memory budget of the whole sandbox, its processes and files together
            (a cgroup; where none can be made, an address-space limit per process).
        max_processes: process/thread budget of the sandbox.
        workspace_mb: size of ``/workspace`` (a tmpfs where the server may mount one).
        cpu_seconds: CPU time the interpreter may use in one episode.
    """

    action_type = ReplAction
    observation_type = ReplObservation
    state_type = ReplState

    def __init__(
        self,
        task: str | None = None,
        max_steps: int = 20,
        max_timeout: float = 60.0,
        memory_mb: int = 1024,
        max_processes: int = 64,
        workspace_mb: int = 256,
        cpu_seconds: int = 600,
    ):
        if task is not None and task != "random" and task not in TASKS:
            raise ValueError(f"task must be None, 'random' or one of {sorted(TASKS)}; got {task!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not max_timeout > 0:
            raise ValueError(f"max_timeout must be > 0, got {max_timeout}")
        self.task = task
        self.max_steps = max_steps
        self.max_timeout = float(max_timeout)
        limits = SandboxLimits(cpu_seconds=cpu_seconds, memory_bytes=memory_mb << 20, max_processes=max_processes, workspace_bytes=workspace_mb << 20)
        self._sandbox = Sandbox(limits)
        self._session = ReplSession(self._sandbox, limits)
        self._rng = random.Random()
        self._current: ReplTask | None = None
        self._state = ReplState()
        self._explicit_answer: str | None = None  # ReplAction.final_answer with is_final

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> ReplObservation:
        if seed is not None:
            self._rng.seed(seed)
        self._sandbox.clear_workspace()
        self._current = None
        if self.task is not None:
            task_id = self._rng.choice(sorted(TASKS)) if self.task == "random" else self.task
            self._current = TASKS[task_id](self._rng)
        self._state = ReplState(episode_id=episode_id or uuid.uuid4().hex, task_id=self.task_id)
        self._start_interpreter()
        message = self._current.statement() if self._current else _FREE_FORM
        return ReplObservation(message=message, reward=0.0, task_id=self.task_id, **self._progress())

    def _progress(self) -> dict[str, int]:
        return {
            "iteration": self._state.step_count,
            "max_iterations": self.max_steps,
            "context_length": len(self._current.context) if self._current else 0,
        }

    @property
    def task_id(self) -> str | None:
        return self._current.id if self._current else None

    def _start_interpreter(self) -> None:
        """A fresh interpreter, with the task's ``context`` loaded."""
        self._session.restart()
        if self._current is not None:
            loaded = list(self._session.run("", _CONTEXT_TIMEOUT, variables={"context": self._current.context}))[-1]
            if loaded.reply is None:
                raise RuntimeError(f"could not load the task context into the interpreter: {loaded.note}")

    def step(self, action: ReplAction) -> ReplObservation:
        for observation in self.stream_step(action):
            pass
        return observation

    def stream_step(self, action: ReplAction) -> Iterator[ReplObservation]:
        """Yield the cell's output so far while it runs (``metadata["partial"]``), the result last."""
        timeout = self._timeout(action)
        sent = self._submit(action, timeout)
        for execution in self._session.collect(timeout, sent):
            if not execution.finished:
                yield ReplObservation(
                    stdout=execution.stdout, stderr=execution.stderr, reward=0.0, metadata={"partial": True}
                )
        yield self._result(execution)

    @classmethod
    def step_batch(cls, envs: Sequence[ReplEnvironment], actions: Sequence[ReplAction]) -> list[ReplObservation]:
        """Send every session its cell, then collect each: the batch takes as long as its
        slowest cell, not the sum."""
        timeouts = [env._timeout(action) for env, action in zip(envs, actions)]
        sent = [env._submit(action, timeout) for env, action, timeout in zip(envs, actions, timeouts)]
        results = []
        for env, timeout, when in zip(envs, timeouts, sent):
            for execution in env._session.collect(timeout, when):
                pass
            results.append(env._result(execution))
        return results

    def _timeout(self, action: ReplAction) -> float:
        timeout = float(action.timeout)
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"ReplAction.timeout must be a positive number of seconds, got {action.timeout!r}")
        return min(timeout, self.max_timeout)

    def _submit(self, action: ReplAction, timeout: float) -> float | None:
        self._state.step_count += 1
        self._explicit_answer = action.final_answer if action.is_final else None
        if not self._session.alive:  # a previous stream was abandoned mid-cell, which stops the cell
            self._state.restarts += 1
            self._start_interpreter()
        return self._session.submit(action.code, timeout)

    def _result(self, execution: Execution) -> ReplObservation:
        outcome = execution.note or execution.status.value
        message = outcome
        if not self._session.alive:
            self._state.restarts += 1
            self._start_interpreter()
            message += "; a fresh interpreter was started: variables were lost"
        answer = self._submitted_answer(execution)
        reward, done = 0.0, False
        if self._current is not None and answer is not None:
            done = True
            correct = answers_match(answer, self._current.answer)
            reward = 1.0 if correct else 0.0
            message = f"answer {answer!r} is {'correct' if correct else 'wrong'}"
        truncated = self._current is not None and not done and self._state.step_count >= self.max_steps
        return ReplObservation(
            stdout=execution.stdout,
            stderr=execution.stderr,
            message=message,
            reward=reward,
            done=done or truncated,
            truncated=truncated,
            status=execution.status.value,
            final_answer=answer,
            task_id=self.task_id,
            result={
                "stdout": execution.stdout,
                "stderr": execution.stderr,
                "success": execution.status is ExecStatus.OK,
                "exception": None if execution.status is ExecStatus.OK else outcome,
            },  # no execution_time: info must be the same for the same seed and actions
            **self._progress(),
        )

    def _submitted_answer(self, execution: Execution) -> str | None:
        if self._explicit_answer is not None:
            return self._explicit_answer
        if execution.reply is not None and execution.reply.get("final") is not None:
            return str(execution.reply["final"])
        printed = _FINAL_LINE.findall(execution.stdout)
        return printed[-1] if printed else None

    @property
    def state(self) -> ReplState:
        return self._state

    @property
    def sandbox(self) -> Sandbox:
        """The session's sandbox (its uid, workspace and processes), for inspection."""
        return self._sandbox

    def close(self) -> None:
        self._session.stop()
        self._sandbox.close()

    def metadata(self) -> EnvironmentMetadata:
        return replace(super().metadata(), extra={"tasks": sorted(TASKS), "streaming": True})
