"""REPL's action, observation and state.

Action space ``Dict(code: Text, timeout: Box(0.1, 600))``; observation space
``Dict(stdout, stderr, message)``, all ``Text``. The submitted answer and how
the cell ended reach the user in ``info``.

Upstream OpenEnv's ``repl_env`` clients work too: the action takes its
``is_final``/``final_answer``, and the observation carries its ``result``
(the cell's output in upstream's ``CodeBlockResult`` shape), ``iteration``,
``max_iterations`` and ``context_length``.
"""

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import NOT_IN_SPACE, text
from gym_openenv.servers._sandbox import SandboxLimits, text_length_bound

OUTPUT_TEXT_LENGTH = text_length_bound(SandboxLimits().max_output_bytes)
CODE_LENGTH = 1 << 17
MAX_TIMEOUT = 600.0


@dataclass
class ReplAction(Action):
    """A cell of Python to run in the session's interpreter, and its wall-clock limit in seconds.

    ``is_final=True`` with a ``final_answer`` submits that answer after the
    cell ran, as ``FINAL(answer)`` in the cell would.
    """

    code: Annotated[str, text(CODE_LENGTH)]
    timeout: Annotated[float, Box(0.1, MAX_TIMEOUT, shape=(), dtype=np.float64)] = 10.0
    is_final: Annotated[bool, NOT_IN_SPACE] = False
    final_answer: Annotated[str | None, NOT_IN_SPACE] = None


@dataclass
class ReplObservation(Observation):
    """The cell's output and what happened.

    ``message`` is the task (question and what ``context`` holds) at reset, then
    one line per step ("ok", "error", "interrupted ...", "answer 42 is correct").
    """

    stdout: Annotated[str, text(OUTPUT_TEXT_LENGTH)] = ""
    stderr: Annotated[str, text(OUTPUT_TEXT_LENGTH)] = ""
    message: Annotated[str, text(1 << 14)] = ""
    #: How the cell ended: ok, error, timeout, cpu_limit, output_limit, killed (see ExecStatus).
    status: str | None = None
    #: The answer submitted with FINAL(...) in this step, if any.
    final_answer: str | None = None
    task_id: str | None = None
    #: The cell's result in upstream's ``CodeBlockResult`` shape: stdout, stderr, success, exception.
    result: Annotated[dict[str, Any], NOT_IN_SPACE] = field(default_factory=dict)
    #: Steps taken this episode, and the steps a task episode may take.
    iteration: int = 0
    max_iterations: int = 0
    #: Characters in the task's ``context`` (0 when free-form).
    context_length: int = 0


@dataclass
class ReplState(State):
    """The task (None: free-form) and how often the interpreter had to be restarted."""

    task_id: str | None = None
    restarts: int = 0
