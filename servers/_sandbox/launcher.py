"""Runs inside the sandbox: apply resource limits, then become the target program.

``python3 launcher.py '<limits json>' <program> [args...]`` sets each limit with
``setrlimit`` (soft and hard, so the program cannot raise it again) and then
``execv``'s the program, which inherits the limits and sees a clean traceback.
This file is copied into the sandbox; it must only use the standard library.
"""

import json
import os
import resource
import sys


def apply_limits(limits: dict[str, int]) -> None:
    """Set each ``RLIMIT_<NAME>`` to its value; CPU gets a one-second hard margin so
    the program is told (SIGXCPU) before it is killed (SIGKILL)."""
    for name, value in limits.items():
        hard = value + 1 if name == "CPU" else value
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, hard))


def main() -> None:
    limits, program = json.loads(sys.argv[1]), sys.argv[2:]
    apply_limits(limits)
    os.execv(program[0], program)


if __name__ == "__main__":
    main()
