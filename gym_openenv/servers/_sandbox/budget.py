"""One memory and process budget for a whole sandbox: a cgroup of its own.

``setrlimit`` limits each process: 64 processes may each use ``memory_bytes``.
A cgroup counts them together: every process the sandbox starts, and the
files it writes to its tmpfs, share ``memory_bytes`` and ``max_processes``
(threads count as processes, as for ``RLIMIT_NPROC``); past the memory limit
the kernel's OOM killer ends a process inside the sandbox, never outside.

Where it works: the server can create cgroups, that is cgroup v2 with the
``memory`` and ``pids`` controllers enabled (or enabled by us) for the
server's own cgroup, or cgroup v1 ``memory`` and ``pids`` hierarchies the
server may write (root on most machines and containers run as root with a
writable ``/sys/fs/cgroup``). Elsewhere :meth:`CgroupBudget.create` returns
None and the sandbox falls back to per-process rlimits only (see
:class:`~gym_openenv.servers._sandbox.sandbox.SandboxLimits`).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["CgroupBudget"]

_ROOT = Path("/sys/fs/cgroup")
#: Folder under the server's own cgroup that holds the sandboxes' cgroups.
_PARENT = "gym_openenv"


class CgroupBudget:
    """A cgroup (one in each v1 hierarchy, or one v2 cgroup) for one sandbox."""

    def __init__(self, dirs: list[Path], version: int):
        self.dirs = dirs
        self.version = version

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_processes: int) -> CgroupBudget | None:
        """A new cgroup with these limits, or None where this process cannot make one."""
        for make in (_v2_dirs, _v1_dirs):
            try:
                dirs, version = make(name)
            except OSError:
                continue
            if dirs:
                budget = cls(dirs, version)
                try:
                    budget._limit(memory_bytes, max_processes)
                except OSError:
                    budget.remove()
                    continue
                return budget
        return None

    def _limit(self, memory_bytes: int, max_processes: int) -> None:
        if self.version == 2:
            (group,) = self.dirs
            _write(group / "memory.max", memory_bytes)
            _write(group / "memory.swap.max", 0, missing_ok=True)
            _write(group / "pids.max", max_processes)
            return
        memory, pids = self.dirs
        _write(memory / "memory.limit_in_bytes", memory_bytes)
        _write(memory / "memory.memsw.limit_in_bytes", memory_bytes, missing_ok=True)  # no swapping around it
        _write(pids / "pids.max", max_processes)

    def admit(self, pid: int) -> None:
        """Move process ``pid`` (not yet running the sandbox) into the cgroup."""
        for group in self.dirs:
            _write(group / "cgroup.procs", pid)

    def pids(self) -> list[int]:
        """Processes in the cgroup now."""
        found: set[int] = set()
        for group in self.dirs:
            try:
                found.update(int(line) for line in (group / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return sorted(found)

    def oom_kills(self) -> int:
        """How many processes the OOM killer ended in this cgroup so far."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.dirs[0] / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except FileNotFoundError:
            pass
        return 0

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL every process in the cgroup and wait until it is empty (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # already gone
            time.sleep(0.005)

    def remove(self) -> None:
        """Kill what is left and delete the cgroup; idempotent."""
        self.kill_all()
        for group in self.dirs:
            _rmdir(group)
        self.dirs = []

    @staticmethod
    def remove_orphans(is_orphan: Callable[[str], bool]) -> None:
        """Delete empty sandbox cgroups whose name ``is_orphan(name)`` says belong to a dead server."""
        parents = [_own_cgroup_v2()] if _is_v2() else [_own_cgroup_v1(c) for c in ("memory", "pids")]
        for parent in parents:
            if parent is None or not (parent / _PARENT).is_dir():
                continue
            for group in (parent / _PARENT).iterdir():
                if group.is_dir() and is_orphan(group.name):
                    _rmdir(group)  # fails (and stays) while a process is still inside


def _is_v2() -> bool:
    return (_ROOT / "cgroup.controllers").is_file()


def _own_cgroup_v2() -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return _ROOT / line[3:].lstrip("/")
    return None


def _own_cgroup_v1(controller: str) -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return _ROOT / controller / path.lstrip("/")
    return None


def _v2_dirs(name: str) -> tuple[list[Path], int]:
    if not _is_v2():
        return [], 2
    own = _own_cgroup_v2()
    if own is None:
        return [], 2
    parent = own / _PARENT
    if not parent.is_dir():
        # The controllers must be on for our cgroup's children; a cgroup that holds
        # processes (ours) cannot turn them on, so this works where they already are.
        _enable(own)
        parent.mkdir(exist_ok=True)
    _enable(parent)
    group = parent / name
    group.mkdir()
    return [group], 2


def _enable(group: Path) -> None:
    wanted = {"memory", "pids"}
    if not wanted <= set((group / "cgroup.subtree_control").read_text().split()):
        _write(group / "cgroup.subtree_control", "+memory +pids")


def _v1_dirs(name: str) -> tuple[list[Path], int]:
    dirs = []
    for controller in ("memory", "pids"):
        own = _own_cgroup_v1(controller)
        if own is None or not own.is_dir():
            for made in dirs:
                _rmdir(made)
            return [], 1
        group = own / _PARENT / name
        try:
            group.mkdir(parents=True)
        except OSError:
            for made in dirs:
                _rmdir(made)
            raise
        dirs.append(group)
    return dirs, 1


def _write(path: Path, value: object, missing_ok: bool = False) -> None:
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except FileNotFoundError:
        if not missing_ok:
            raise


def _rmdir(group: Path) -> None:
    try:
        group.rmdir()  # a cgroup is removed with rmdir, its control files with it
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EBUSY):
            raise
