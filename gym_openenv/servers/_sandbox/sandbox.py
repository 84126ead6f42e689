"""A bubblewrap sandbox for untrusted code: one per session, many runs.

Each run is ``bwrap`` with every namespace unshared (no network; its own PID
namespace, so killing the sandbox's init ends every process in it), the system
directories bound read-only, a private writable ``/workspace``, a small ``/tmp``,
no environment variables from the server, and resource limits set before the
program starts (util-linux ``prlimit`` inside the sandbox sets them, hard =
soft, then execs the program). When the server runs as root, each
sandbox runs as its own unprivileged uid: the process-count limit then counts
only that sandbox's processes, and every leftover process is found by uid.

Budgets for the whole sandbox, not per process, where the machine allows it
(root, or a delegated cgroup), and what is left where it does not:

* memory (``memory_bytes``): one cgroup for all of the sandbox's processes and
  its tmpfs files (:mod:`.budget`); fallback: ``RLIMIT_AS`` per process, so N
  processes may hold N times ``memory_bytes``.
* processes (``max_processes``): the same cgroup's ``pids.max``; fallback:
  ``RLIMIT_NPROC``, which counts per uid (exact as root, where each sandbox
  has a uid of its own).
* ``/workspace`` (``workspace_bytes``): a tmpfs of that size (mounting needs
  CAP_SYS_ADMIN), never on disk; fallback: a directory under ``$TMPDIR`` whose
  files are capped one by one (``max_file_bytes``), not in total.

A sandbox's directory carries the server's pid in its name; a later sandbox
removes those of servers that died without cleaning up (killed with SIGKILL).

Example:
    >>> sandbox = Sandbox()
    >>> run = sandbox.start(["/usr/bin/python3", "-c", "print(6 * 7)"])
    >>> [e for e in run.stream(timeout=5)][-1].stdout
    '42\\n'
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from gym_openenv.servers._sandbox.budget import CgroupBudget
from gym_openenv.servers._sandbox.process import SandboxProcess

__all__ = ["Sandbox", "SandboxLimits", "SandboxUnavailable", "find_bwrap", "find_prlimit", "find_python", "remove_orphans"]

#: Where things are inside the sandbox.
WORKSPACE = "/workspace"
RUNTIME = "/sandbox"
#: The uid/gid the program sees (mapped to the sandbox's own uid outside).
INNER_UID = 1000
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/mime.types")
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONPATH": WORKSPACE,  # scripts import the agent's own modules from the workspace
}
# Outer uids for sandboxes: far above any real account, one per sandbox.
_UID_RANGE = (1 << 24, 1 << 30)
#: Prefix of every sandbox's directory (and cgroup): ``<prefix>pid<server pid>_<random>``.
_PREFIX = "gym_openenv_sandbox_"
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxUnavailable(RuntimeError):
    """The machine cannot run the sandbox (no bwrap, no Python for it); we never run code unsandboxed."""


def find_bwrap() -> str:
    """Path of ``bwrap``, or :class:`SandboxUnavailable` saying how to install it."""
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, and code never runs unsandboxed: "
            "install it with `apt-get install -y bubblewrap`"
        )
    return path


def find_prlimit() -> str:
    """``prlimit`` under ``/usr`` (util-linux, essential on Debian): it applies the limits."""
    path = shutil.which("prlimit", path="/usr/bin:/usr/sbin")
    if path is None:
        raise SandboxUnavailable("prlimit is not installed: install it with `apt-get install -y util-linux`")
    return path


def find_python() -> str:
    """A Python interpreter under ``/usr`` (the only tree the sandbox sees)."""
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailable("no Python interpreter under /usr for the sandbox: install it with `apt-get install -y python3`")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits: per run (``setrlimit``, ``/tmp`` size, the output cap) and for the
    whole sandbox (``memory_bytes`` and ``max_processes`` again, in its cgroup; ``workspace_bytes``)."""

    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    max_processes: int = 64
    max_file_bytes: int = 64 << 20
    max_open_files: int = 256
    tmp_bytes: int = 64 << 20
    max_output_bytes: int = 1 << 20
    workspace_bytes: int = 256 << 20

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SandboxLimits.{name} must be a positive int, got {value!r}")

    def prlimit_args(self, process_base: int = 0) -> list[str]:
        """``prlimit`` options; ``process_base`` is added to NPROC when the count includes other
        processes. CPU gets a one-second hard margin: SIGXCPU first, SIGKILL a second later."""
        return [
            f"--cpu={self.cpu_seconds}:{self.cpu_seconds + 1}",
            f"--as={self.memory_bytes}",
            f"--nproc={process_base + self.max_processes}",
            f"--fsize={self.max_file_bytes}",
            f"--nofile={self.max_open_files}",
        ]


class Sandbox:
    """One session's sandbox: its uid, its workspace and its runtime files.

    Args:
        limits: default limits for :meth:`start`.

    Raises:
        SandboxUnavailable: no ``bwrap`` or no Python under ``/usr``.
    """

    def __init__(self, limits: SandboxLimits | None = None):
        self.limits = limits or SandboxLimits()
        self.bwrap = find_bwrap()
        self.prlimit = find_prlimit()
        self.python = find_python()
        # Root gives each sandbox its own uid; otherwise runs share ours.
        self.uid = random.SystemRandom().randrange(*_UID_RANGE) if os.geteuid() == 0 else None
        remove_orphans()
        self.root = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}pid{os.getpid()}_"))
        self.root.chmod(0o711)  # the sandbox uid must reach workspace/ and runtime/
        self.budget = CgroupBudget.create(self.root.name, self.limits.memory_bytes, self.limits.max_processes)
        self.workspace_on_tmpfs = False
        self.runtime = self.root / "runtime"
        self.runtime.mkdir(mode=0o755)
        self.runtime.chmod(0o755)
        self.add_runtime_file("passwd", f"sandbox:x:{INNER_UID}:{INNER_UID}::{WORKSPACE}:/bin/sh\n")
        self.add_runtime_file("group", f"sandbox:x:{INNER_UID}:\n")
        self.workspace = self.root / "workspace"
        self.clear_workspace()
        self._closed = False

    def add_runtime_file(self, name: str, content: str) -> str:
        """Put a read-only file at ``/sandbox/<name>``; returns its path inside."""
        path = self.runtime / name
        path.write_text(content)
        path.chmod(0o644)
        return f"{RUNTIME}/{name}"

    def clear_workspace(self) -> None:
        """Empty ``/workspace`` (a new episode starts with nothing in it)."""
        if self.workspace_on_tmpfs:
            _unmount(self.workspace)  # a fresh tmpfs below; a running sandbox keeps its old one until it ends
        elif self.workspace.exists():
            shutil.rmtree(self.workspace)
        self.workspace.mkdir(mode=0o700, exist_ok=True)
        self.workspace_on_tmpfs = _mount_tmpfs(self.workspace, self.limits.workspace_bytes, self.uid)
        if self.uid is not None and not self.workspace_on_tmpfs:
            os.chown(self.workspace, self.uid, self.uid)

    def start(self, program: list[str], limits: SandboxLimits | None = None, pass_fds: tuple[int, ...] = ()) -> SandboxProcess:
        """Start ``program`` (a path inside the sandbox and its arguments) in a fresh sandbox.

        ``pass_fds`` are extra pipe ends the program inherits under the same numbers.
        """
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        limits = limits or self.limits
        process_base = 0 if self.uid is not None else _count_processes(os.getuid())
        launch = [self.prlimit, *limits.prlimit_args(process_base), "--", *program]
        return SandboxProcess.spawn(
            self._bwrap_args(limits),
            launch,
            uid=self.uid,
            output_limit=limits.max_output_bytes,
            pass_fds=pass_fds,
            sweep=self.kill_all,
            admit=self.budget.admit if self.budget else None,
            oom_kills=self.budget.oom_kills if self.budget else None,
        )

    def _bwrap_args(self, limits: SandboxLimits) -> list[str]:
        args = [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
        args += ["--uid", str(INNER_UID), "--gid", str(INNER_UID), "--die-with-parent", "--new-session"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for path in _ETC_FILES:
            args += ["--ro-bind-try", path, path]
        args += ["--ro-bind", str(self.runtime / "passwd"), "/etc/passwd"]
        args += ["--ro-bind", str(self.runtime / "group"), "/etc/group"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        # /dev and / are tmpfs: make them read-only and give the writable ones a size.
        args += ["--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        args += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
        args += ["--bind", str(self.workspace), WORKSPACE, "--ro-bind", str(self.runtime), RUNTIME]
        args += ["--remount-ro", "/", "--chdir", WORKSPACE, "--clearenv"]
        for name, value in _ENV.items():
            args += ["--setenv", name, value]
        return args

    def kill_all(self) -> None:
        """Kill every process of this sandbox: its cgroup's, and those running as its uid
        (nothing outlives a run)."""
        if self.budget is not None:
            self.budget.kill_all()
        if self.uid is None:
            return
        deadline = time.monotonic() + 2.0
        # A process may fork while we look; the pid namespace's teardown ends those too.
        while (leftovers := _live_pids_of(self.uid)) and time.monotonic() < deadline:
            for pid in leftovers:
                _kill(pid)
            time.sleep(0.005)

    def processes(self) -> list[psutil.Process]:
        """Live (not zombie) processes running as this sandbox's uid; empty when not root."""
        if self.uid is None:
            return []
        found = []
        for pid in _live_pids_of(self.uid):
            try:
                found.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass  # ended since we looked: not a leftover
        return found

    def close(self) -> None:
        """Kill what is left and delete the workspace; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.kill_all()
        if self.budget is not None:
            self.budget.remove()
        _remove_root(self.root)


def remove_orphans() -> None:
    """Remove sandbox directories, workspace mounts and cgroups of servers that are gone."""

    def orphaned(name: str) -> bool:
        owner = re.fullmatch(rf"{_PREFIX}pid(\d+)_\w+", name)
        return owner is not None and not psutil.pid_exists(int(owner.group(1)))

    temp = Path(tempfile.gettempdir())
    for root in temp.glob(f"{_PREFIX}*"):
        if orphaned(root.name):
            _remove_root(root)
    CgroupBudget.remove_orphans(orphaned)


def _remove_root(root: Path) -> None:
    workspace = root / "workspace"
    if os.path.ismount(workspace):
        _unmount(workspace)
    shutil.rmtree(root, ignore_errors=True)


def _mount_tmpfs(target: Path, size: int, uid: int | None) -> bool:
    """Mount a tmpfs of ``size`` bytes at ``target``; False where we may not mount (not root,
    no CAP_SYS_ADMIN): the workspace then stays a plain directory."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    options = f"size={size},nr_inodes={max(1024, size // 4096)},mode=0700{owner}"
    return _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()) == 0


def _unmount(target: Path) -> None:
    _libc.umount2(str(target).encode(), _MNT_DETACH)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone: that is what we wanted


def _live_pids_of(uid: int) -> list[int]:
    """Pids whose real uid is ``uid``, zombies left out. Reads ``/proc/<pid>/status``
    directly (the owner of ``/proc/<pid>`` would not do: a non-dumpable process's is root);
    three times faster than psutil on every step."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue  # ended while we looked
        start = status.find(b"\nUid:") + 5
        real_uid = int(status[start : status.find(b"\n", start)].split()[0])
        if real_uid == uid and b"\nState:\tZ" not in status:
            pids.append(int(name))
    return pids


def _count_processes(uid: int) -> int:
    # RLIMIT_NPROC counts threads too.
    procs = psutil.process_iter(["uids", "num_threads"])
    return sum(p.info["num_threads"] or 1 for p in procs if p.info["uids"] and p.info["uids"].real == uid)
