"""Shared sandbox for the code-running servers (``servers/coding``, ``servers/repl``).

bubblewrap (``bwrap``) isolates each run: no network, read-only system
directories, a private ``/workspace``, cleared environment, resource limits,
and a wall-clock limit that kills the whole PID namespace.
"""

from servers._sandbox.output import OutputCapture, text_length_bound, to_space_text
from servers._sandbox.process import ExecStatus, Execution, SandboxProcess
from servers._sandbox.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, find_bwrap, find_prlimit, find_python

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
