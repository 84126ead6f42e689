"""One running sandbox: stream its output under a wall-clock limit, then say what happened.

:meth:`SandboxProcess.stream` yields partial :class:`Execution` snapshots while
the program runs and a finished one last. It ends a run when the program exits
(one-shot programs) or when the program answers on a reply pipe (a long-lived
REPL), and kills the whole sandbox on timeout or too much output.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import psutil

from gym_openenv.servers._sandbox.output import OutputCapture

__all__ = ["ExecStatus", "Execution", "SandboxProcess"]


class ExecStatus(str, Enum):
    """How a run ended."""

    OK = "ok"  # exited 0 (or the REPL ran the code without an exception)
    ERROR = "error"  # non-zero exit, or an exception in the REPL
    TIMEOUT = "timeout"  # wall-clock limit reached
    CPU_LIMIT = "cpu_limit"  # RLIMIT_CPU reached
    OUTPUT_LIMIT = "output_limit"  # more output than the cap: stopped
    KILLED = "killed"  # killed by a signal


@dataclass
class Execution:
    """A run's output so far (``finished=False``) or its result (``finished=True``)."""

    stdout: str = ""
    stderr: str = ""
    finished: bool = False
    status: ExecStatus | None = None
    exit_code: int | None = None
    #: What happened, in words, when it was more than a plain exit (killed, timed out, ...).
    note: str = ""
    #: The program's answer on the reply pipe (REPL), if it gave one.
    reply: dict[str, Any] | None = None
    duration: float = 0.0


class SandboxProcess:
    """A ``bwrap`` process and the pipes to it; made by :meth:`Sandbox.start`."""

    def __init__(
        self,
        popen: subprocess.Popen,
        status_fd: int,
        output_limit: int,
        sweep: Callable[[], None],
        oom_kills: Callable[[], int] | None = None,
    ):
        self.popen = popen
        self._status_fd = status_fd
        self._output_limit = output_limit
        self._sweep = sweep
        self._oom_kills = oom_kills
        self._oom_kills_before = oom_kills() if oom_kills else 0
        self._eof: set[int] = set()
        self._reply_buffer = b""
        self._program_pid: int | None = None
        #: ``time.monotonic()`` when the sandbox was started.
        self.started = time.monotonic()
        for stream in (popen.stdout, popen.stderr):
            os.set_blocking(stream.fileno(), False)

    @classmethod
    def spawn(
        cls,
        bwrap_args: list[str],
        command: list[str],
        *,
        uid: int | None,
        output_limit: int,
        pass_fds: tuple[int, ...],
        sweep: Callable[[], None],
        admit: Callable[[int], None] | None = None,
        oom_kills: Callable[[], int] | None = None,
    ) -> SandboxProcess:
        """Start bwrap. With ``admit``, the process waits at a gate (a shell reading one
        line) until ``admit(pid)`` has moved it into the sandbox's cgroup, then becomes
        bwrap (``exec`` keeps the pid): nothing of the sandbox runs outside the cgroup."""
        status_read, status_write = os.pipe()
        argv = [*bwrap_args, "--json-status-fd", str(status_write), "--", *command]
        gate_read = gate_write = None
        if admit is not None:
            gate_read, gate_write = os.pipe()
            argv = ["/bin/sh", "-c", 'read -r _ && exec "$@" </dev/null', "sandbox-gate", *argv]
        try:
            popen = subprocess.Popen(
                argv,
                stdin=gate_read if gate_read is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_write, *pass_fds),
                start_new_session=True,
                # bwrap's own processes (the sandbox's init among them, readable in /proc/1/environ)
                # must not carry the server's environment either.
                env={},
                user=uid,
                group=uid,
                extra_groups=[] if uid is not None else None,
            )
        finally:
            os.close(status_write)
            if gate_read is not None:
                os.close(gate_read)
        if gate_write is not None:
            try:
                admit(popen.pid)
                os.write(gate_write, b"go\n")
            except BaseException:
                popen.kill()
                popen.wait()
                raise
            finally:
                os.close(gate_write)
        return cls(popen, status_read, output_limit, sweep, oom_kills)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stream(
        self,
        timeout: float,
        *,
        reply_fd: int | None = None,
        interrupt_grace: float = 0.0,
        interval: float = 0.1,
        since: float | None = None,
    ) -> Iterator[Execution]:
        """Collect output until the program exits, or until it writes a JSON line on
        ``reply_fd``; yield a snapshot at most every ``interval`` seconds while new
        output arrives, and the finished :class:`Execution` last.

        At ``timeout`` a program with a reply pipe first gets SIGINT and
        ``interrupt_grace`` seconds to answer; otherwise (or then) the sandbox is killed.
        ``timeout`` counts from ``since`` (a ``time.monotonic()`` value; default: now).
        """
        started = time.monotonic() if since is None else since
        deadline = started + timeout
        out, err = OutputCapture(self._output_limit), OutputCapture(self._output_limit)
        captures = {self.popen.stdout.fileno(): out, self.popen.stderr.fileno(): err}
        selector = selectors.DefaultSelector()
        for fd in captures:
            if fd not in self._eof:
                selector.register(fd, selectors.EVENT_READ)
        if reply_fd is not None:
            selector.register(reply_fd, selectors.EVENT_READ)
        stop: ExecStatus | None = None
        interrupted = reply_lost = False
        reply: dict[str, Any] | None = None
        last_yield, fresh = started, False
        finished = False
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    if reply_fd is not None and interrupt_grace > 0 and not interrupted:
                        interrupted = True
                        self._interrupt()
                        deadline = now + interrupt_grace
                        continue
                    stop = ExecStatus.TIMEOUT
                    break
                for key, _ in selector.select(timeout=min(deadline - now, interval)):
                    if key.fd == reply_fd:
                        reply, reply_lost = self._read_reply(reply_fd)
                        while reply is not None and reply.get("started"):
                            # The program began the request only now (a busy machine may not have
                            # run it yet): the limit counts from here, and an interrupt sent
                            # before it started (which it ignores) is sent again at the new deadline.
                            deadline, interrupted = time.monotonic() + timeout, False
                            reply, reply_lost = self._read_reply(reply_fd, buffered_only=True)
                        if reply_lost:
                            selector.unregister(reply_fd)
                    elif self._read_into(key.fd, captures[key.fd]):
                        fresh = True
                    else:
                        selector.unregister(key.fd)
                if out.over_limit or err.over_limit:
                    stop = ExecStatus.OUTPUT_LIMIT
                    break
                if reply is not None or reply_lost:
                    break
                if reply_fd is None and all(fd in self._eof for fd in captures):
                    break  # every writer closed its end: the program is over
                if reply_fd is not None and not self.alive:
                    break
                if fresh and time.monotonic() - last_yield >= interval:
                    last_yield, fresh = time.monotonic(), False
                    yield Execution(stdout=out.text(), stderr=err.text(), duration=last_yield - started)
            finished = True
        finally:
            selector.close()
            if not finished:  # the consumer stopped listening: stop the program too
                self.kill()
        # Output written before the program exited or answered is already in the pipes.
        for fd, capture in captures.items():
            self._drain(fd, capture)
        if stop is None and (reply_fd is None or reply_lost):
            # The program closed its pipes: let bwrap exit by itself and report the exit code.
            grace = deadline - time.monotonic() if reply_fd is None else 1.0
            try:
                self.popen.wait(timeout=max(grace, 0.05))
            except subprocess.TimeoutExpired:
                stop = ExecStatus.TIMEOUT if reply_fd is None else None
        if stop is not None or reply_lost or reply_fd is None or not self.alive:
            self.kill()
        result = Execution(stdout=out.text(), stderr=err.text(), finished=True, reply=reply)
        result.duration = time.monotonic() - started
        if reply is not None and self.alive:
            result.status = ExecStatus.OK if reply.get("ok") else ExecStatus.ERROR
            if interrupted:
                result.status = ExecStatus.TIMEOUT
                result.note = f"interrupted (KeyboardInterrupt) at the wall-clock limit of {timeout:g} s"
            yield result
        else:
            yield self._ended(result, stop, timeout)

    def _ended(self, result: Execution, stop: ExecStatus | None, timeout: float) -> Execution:
        """Fill in status, exit code and note for a program that is no longer running."""
        if stop is ExecStatus.TIMEOUT:
            result.status, result.note = stop, f"killed: the wall-clock limit of {timeout:g} s was reached"
            return result
        if stop is ExecStatus.OUTPUT_LIMIT:
            result.status = stop
            result.note = f"killed: output passed the limit of {self._output_limit} bytes per stream"
            return result
        code = self._exit_code()
        result.exit_code = code
        if code is None:
            # bwrap reports the program's exit code once it has started it.
            result.exit_code = self.popen.returncode
            result.status, result.note = ExecStatus.ERROR, "the sandbox failed to start (bwrap's message is in stderr)"
        elif code == 0:
            result.status = ExecStatus.OK
        elif code == 128 + signal.SIGXCPU:
            result.status, result.note = ExecStatus.CPU_LIMIT, "killed: the CPU time limit was reached (SIGXCPU)"
        elif code > 128 and code - 128 in signal.valid_signals():
            name = signal.Signals(code - 128).name
            result.status, result.note = ExecStatus.KILLED, f"killed by signal {name}"
            if self._oom_kills and self._oom_kills() > self._oom_kills_before:
                result.note += " (the sandbox's memory budget was used up)"
        else:
            result.status, result.note = ExecStatus.ERROR, f"exited with code {code}"
        return result

    def _exit_code(self) -> int | None:
        """The program's exit code from bwrap's JSON status (None: bwrap never started it)."""
        data = b""
        while chunk := os.read(self._status_fd, 65536):
            data += chunk
        decoder, text, pos, code = json.JSONDecoder(), data.decode(errors="replace"), 0, None
        while (pos := _skip_space(text, pos)) < len(text):
            document, pos = decoder.raw_decode(text, pos)
            code = document.get("exit-code", code)
        return code

    def _read_into(self, fd: int, capture: OutputCapture) -> bool:
        """Read what is there; False at end of file."""
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        if not chunk:
            self._eof.add(fd)
            return False
        capture.feed(chunk)
        return True

    def _drain(self, fd: int, capture: OutputCapture) -> None:
        while fd not in self._eof and not capture.over_limit:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self._eof.add(fd)
                return
            capture.feed(chunk)

    def discard_replies(self, fd: int) -> None:
        """Drop anything already in the reply pipe (a stale answer must not end the next run)."""
        self._reply_buffer = b""
        os.set_blocking(fd, False)
        try:
            while os.read(fd, 1 << 16):
                pass
        except BlockingIOError:
            pass  # empty: done

    def _read_reply(self, fd: int, *, buffered_only: bool = False) -> tuple[dict[str, Any] | None, bool]:
        """(reply, lost): a complete JSON line, or lost=True when the pipe closed or carried garbage.

        A line already read into the buffer comes first; ``buffered_only`` reads nothing more."""
        if b"\n" not in self._reply_buffer:
            if buffered_only:
                return None, False
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return None, False
            if not chunk:
                return None, True
            self._reply_buffer += chunk
            if b"\n" not in self._reply_buffer:
                return None, False
        line, self._reply_buffer = self._reply_buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            return None, True
        return (reply, False) if isinstance(reply, dict) else (None, True)

    def program_pid(self) -> int | None:
        """Outer pid of the program: bwrap's child is the sandbox's init, whose first child is
        the program (later children are processes the program left behind)."""
        if self._program_pid is None:
            try:
                inits = psutil.Process(self.popen.pid).children()
                children = sorted((c for init in inits for c in init.children()), key=lambda p: p.create_time())
            except psutil.NoSuchProcess:
                return None
            self._program_pid = children[0].pid if children else None
        return self._program_pid

    def kill_strays(self, timeout: float = 5.0) -> int:
        """Kill every process in the sandbox but its init and the program (a long-lived
        program's background processes must not outlive a step); returns how many.

        In rounds, until a look finds none: a process not yet killed when the list was
        taken may fork meanwhile (a fork bomb does little else), and on a loaded machine
        one round leaves dozens behind.
        """
        program = self.program_pid()
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                bwrap = psutil.Process(self.popen.pid)
                keep = {init.pid for init in bwrap.children()} | {program}
                strays = [p for p in bwrap.children(recursive=True) if p.pid not in keep and _alive(p)]
            except psutil.NoSuchProcess:
                break  # the sandbox itself is gone, and its processes with it
            if not strays:
                break
            for proc in strays:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass  # it ended by itself
            killed.update(p.pid for p in strays)
            _wait_dead(strays, timeout=1.0)
        return len(killed)

    def _interrupt(self) -> None:
        """SIGINT to the program (Python raises KeyboardInterrupt)."""
        pid = self.program_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass  # it ended meanwhile; the stream notices

    def kill(self) -> None:
        """Kill the sandbox and every process in it; idempotent.

        Killing bwrap takes down the sandbox's init, and with it the PID namespace;
        as that teardown runs asynchronously, we then also kill (and wait for) every
        process still running under the sandbox's uid.
        """
        try:
            descendants = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        if self.alive:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited between poll and kill
        for proc in descendants:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass  # died with its pid namespace
        self.popen.wait()
        self._sweep()

    def close(self) -> None:
        """Kill and release the pipes; idempotent."""
        self.kill()
        for stream in (self.popen.stdout, self.popen.stderr):
            stream.close()
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1


def _alive(proc: psutil.Process) -> bool:
    """Running, and not a zombie (a zombie can do nothing; its parent reaps it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until every process has exited; a zombie counts as dead (its parent may never
    reap it, and it can do nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
                return
        except psutil.NoSuchProcess:
            continue  # one vanished between the two checks: look again
        time.sleep(0.005)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
