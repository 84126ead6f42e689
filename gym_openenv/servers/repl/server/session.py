"""A persistent sandboxed Python interpreter: start it, run cells, restart it.

The interpreter (``driver.py``) runs in the session's :class:`Sandbox`; the
server writes JSON requests into one pipe and reads JSON replies from another,
while the cell's stdout/stderr stream through the sandbox's own pipes.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gym_openenv.servers._sandbox import ExecStatus, Execution, Sandbox, SandboxLimits, SandboxProcess

__all__ = ["ReplSession"]

_DRIVER = Path(__file__).with_name("driver.py")
#: Seconds the interpreter gets to start and to answer a SIGINT after a timeout.
#: An interpreter that answers ends the wait at once, so a generous grace costs only
#: cells that ignore SIGINT; a short one lost the session's variables whenever the
#: machine was busy (the interpreter had not been scheduled yet when it was killed).
STARTUP_TIMEOUT = 10.0
INTERRUPT_GRACE = 5.0


class ReplSession:
    """One interpreter process in ``sandbox``; :meth:`restart` gives a fresh one."""

    def __init__(self, sandbox: Sandbox, limits: SandboxLimits):
        self.sandbox = sandbox
        self.limits = limits
        self._driver = sandbox.add_runtime_file("driver.py", _DRIVER.read_text())
        self._process: SandboxProcess | None = None
        self._command_fd = self._reply_fd = -1

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.alive

    def restart(self) -> None:
        """Stop the interpreter (if any) and start a fresh one, waiting until it is ready."""
        self.stop()
        command_read, self._command_fd = os.pipe()
        self._reply_fd, reply_write = os.pipe()
        try:
            command = [self.sandbox.python, "-u", self._driver, str(command_read), str(reply_write)]
            self._process = self.sandbox.start(command, self.limits, pass_fds=(command_read, reply_write))
        finally:
            os.close(command_read)
            os.close(reply_write)
        os.set_blocking(self._command_fd, False)
        started = list(self._process.stream(STARTUP_TIMEOUT, reply_fd=self._reply_fd))[-1]
        if started.reply is None or not self.alive:
            self.stop()
            raise RuntimeError(f"the sandboxed interpreter did not start: {started.note} {started.stderr[-2000:]}")
        self._process.program_pid()  # remember it before the agent can start others

    def run(self, code: str, timeout: float, variables: dict[str, Any] | None = None) -> Iterator[Execution]:
        """Run one cell; yield output so far, then the finished :class:`Execution`.

        At ``timeout`` the interpreter gets a KeyboardInterrupt; if it does not answer
        within :data:`INTERRUPT_GRACE` seconds it is killed (``alive`` turns False).
        Processes the cell started in the background are killed when it ends.
        """
        sent = self.submit(code, timeout, variables)
        yield from self.collect(timeout, sent)

    def submit(self, code: str, timeout: float, variables: dict[str, Any] | None = None) -> float | None:
        """Send a cell without waiting for it; returns when it was sent (``time.monotonic()``),
        or None when the interpreter no longer reads (it is then stopped)."""
        if not self.alive:
            raise RuntimeError("the interpreter is not running; call restart()")
        self._process.discard_replies(self._reply_fd)
        request = (json.dumps({"code": code, "variables": variables or {}}) + "\n").encode()
        sent = time.monotonic()
        if not self._send(request, sent + timeout):
            self.stop()
            return None
        return sent

    def collect(self, timeout: float, sent: float | None) -> Iterator[Execution]:
        """The output of the cell :meth:`submit` sent at ``sent``; its limit counts from then."""
        if sent is None:
            yield Execution(finished=True, status=ExecStatus.KILLED, note="the interpreter stopped reading its input")
            return
        stream = self._process.stream(timeout, reply_fd=self._reply_fd, interrupt_grace=INTERRUPT_GRACE, since=sent)
        yield from stream
        if self.alive:
            self._process.kill_strays()
        else:
            self.stop()

    def _send(self, data: bytes, deadline: float) -> bool:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.alive:
                return False
            _, writable, _ = select.select([], [self._command_fd], [], min(remaining, 0.1))
            if writable:
                try:
                    view = view[os.write(self._command_fd, view) :]
                except BrokenPipeError:
                    return False
        return True

    def stop(self) -> None:
        """Kill the interpreter and every process it started; idempotent."""
        if self._process is not None:
            self._process.close()
            self._process = None
        for fd in (self._command_fd, self._reply_fd):
            if fd >= 0:
                os.close(fd)
        self._command_fd = self._reply_fd = -1
