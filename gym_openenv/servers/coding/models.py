"""Coding's action, observation and state, with upstream OpenEnv's ``coding_env``
field names (``code`` in; ``stdout``, ``stderr``, ``exit_code`` out) plus our own.

The action space is ``Dict(code: Text, timeout: Box(0.1, 600))``; the observation
space is ``Dict(stdout, stderr, message)``, all ``Text``. Exit code, status and
test counts are not part of the space; they reach the user in ``info``.

Over OpenEnv JSON the observation shows upstream's three fields and carries
ours in its ``metadata`` (``METADATA_IN_JSON``): upstream's typed client
refuses any field its model does not declare.
"""

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.models import Action, Observation, State
from gym_openenv.spaces import METADATA_IN_JSON, text
from gym_openenv.servers._sandbox import SandboxLimits, text_length_bound

#: Longest stdout/stderr text (the sandbox keeps 1 MiB per stream; escapes can lengthen it).
OUTPUT_TEXT_LENGTH = text_length_bound(SandboxLimits().max_output_bytes)
#: Longest program the action space accepts.
CODE_LENGTH = 1 << 17
MAX_TIMEOUT = 600.0


@dataclass
class CodeAction(Action):
    """Python source to run as a script, and its wall-clock limit in seconds."""

    code: Annotated[str, text(CODE_LENGTH)]
    timeout: Annotated[float, Box(0.1, MAX_TIMEOUT, shape=(), dtype=np.float64)] = 10.0


@dataclass
class CodeObservation(Observation):
    """What the run printed, and what happened.

    ``message`` is the task statement at reset, then one line per step
    ("exited with code 0", "killed: the wall-clock limit of 2 s was reached",
    "3/5 hidden tests passed").
    """

    stdout: Annotated[str, text(OUTPUT_TEXT_LENGTH)] = ""
    stderr: Annotated[str, text(OUTPUT_TEXT_LENGTH)] = ""
    message: Annotated[str, text(1 << 14), METADATA_IN_JSON] = ""
    #: The program's exit code as a shell reports it: 128 + the signal's number for a
    #: program killed by one (137, SIGKILL, when the sandbox stopped it); 0 at reset.
    exit_code: int = 0
    #: How the run ended: ok, error, timeout, cpu_limit, output_limit, killed (see ExecStatus).
    status: Annotated[str | None, METADATA_IN_JSON] = None
    tests_passed: Annotated[int | None, METADATA_IN_JSON] = None
    tests_total: Annotated[int | None, METADATA_IN_JSON] = None
    task_id: Annotated[str | None, METADATA_IN_JSON] = None


@dataclass
class CodeState(State):
    """Which task the episode is on (None: free-form), how many attempts it made,
    and the exit code of its last run (upstream coding_env's ``last_exit_code``;
    0 before the first run, as :attr:`CodeObservation.exit_code`)."""

    task_id: str | None = None
    attempts: int = 0
    last_exit_code: int = 0
