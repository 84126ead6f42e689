"""Shared sandbox for the code-running servers (``gym_openenv/servers/coding``, ``gym_openenv/servers/repl``).

bubblewrap (``bwrap``) isolates each run: no network, read-only system
directories, a private ``/workspace``, cleared environment, resource limits,
and a wall-clock limit that kills the whole PID namespace.
"""

from gym_openenv.servers._sandbox.output import OutputCapture, text_length_bound, to_space_text
from gym_openenv.servers._sandbox.process import ExecStatus, Execution, SandboxProcess
from gym_openenv.servers._sandbox.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, find_bwrap, find_prlimit, find_python

__all__ = [
    "ExecStatus",
    "Execution",
    "OutputCapture",
    "Sandbox",
    "SandboxLimits",
    "SandboxProcess",
    "SandboxUnavailable",
    "find_bwrap",
    "find_prlimit",
    "find_python",
    "text_length_bound",
    "to_space_text",
]
