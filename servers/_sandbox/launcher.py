"""Runs inside the sandbox: apply resource limits, then become the target program.

``python3 -I -S launcher.py CPU=10 AS=1073741824 ... -- <program> [args...]`` sets
each ``RLIMIT_<NAME>`` with ``setrlimit`` (soft and hard, so the program cannot
raise it again) and then ``execv``'s the program, which inherits the limits and
shows clean tracebacks. This file is copied into the sandbox; it uses only
modules that load before ``site`` (it starts with ``-I -S`` for speed).
"""

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
    split = sys.argv.index("--")
    limits = dict(arg.split("=", 1) for arg in sys.argv[1:split])
    apply_limits({name: int(value) for name, value in limits.items()})
    program = sys.argv[split + 1 :]
    os.execv(program[0], program)


if __name__ == "__main__":
    main()
