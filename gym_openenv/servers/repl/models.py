"""REPL's action, observation and state.

Action space ``Dict(code: Text, timeout: Box(0.1, 600))``; observation space
``Dict(stdout, stderr, message)``, all ``Text``. The submitted answer and how
the cell ended reach the user in ``info``.
"""

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import text
from gym_openenv.servers._sandbox import SandboxLimits, text_length_bound

OUTPUT_TEXT_LENGTH = text_length_bound(SandboxLimits().max_output_bytes)
CODE_LENGTH = 1 << 17
MAX_TIMEOUT = 600.0


@dataclass
class ReplAction(Action):
    """A cell of Python to run in the session's interpreter, and its wall-clock limit in seconds."""

    code: Annotated[str, text(CODE_LENGTH)]
    timeout: Annotated[float, Box(0.1, MAX_TIMEOUT, shape=(), dtype=np.float64)] = 10.0


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


@dataclass
class ReplState(State):
    """The task (None: free-form) and how often the interpreter had to be restarted."""

    task_id: str | None = None
    restarts: int = 0
