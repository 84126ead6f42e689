"""Run the server as a local process inside a bubblewrap sandbox.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("openenv/echo-v0", provider="sandbox")
    >>> env.reset(seed=0)
    ('', {'message_length': 0})
    >>> env.close()

The server gets no network at all (its own empty network namespace): it
serves on a Unix socket in a private directory, the one path it can write
besides a private ``/tmp`` (over which the interpreter's own folders are bound
again, read-only, should a venv or a clone live under ``/tmp``:
:func:`interpreter_paths`). The rest of the file system is read-only, it
runs in its own PID, IPC and UTS namespaces with no capabilities, and it dies
with the provider's child process (``--die-with-parent``), so nothing it
starts outlives :meth:`~SandboxProvider.stop`.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from gym_openenv.providers.local import LocalProcessProvider

__all__ = ["SandboxProvider", "bwrap_command", "interpreter_paths"]

# bubblewrap's --die-with-parent fires when the *thread* that forked it exits,
# and the vector env starts servers from short-lived pool threads: every
# sandbox is forked from this one thread, which lives as long as the process.
_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="openenv-sandbox-spawner")


def interpreter_paths() -> list[str]:
    """What the server's interpreter needs that a private ``/tmp`` would hide: this
    interpreter's prefixes (a venv, its base), its site-packages and the folder
    gym_openenv is imported from (a clone, an editable install), where they are under ``/tmp``."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, package_parent]
    candidates += site.getsitepackages() + [os.path.dirname(sys.executable)]
    found: set[str] = set()
    for path in candidates:
        for form in (os.path.abspath(path), os.path.realpath(path)):  # a venv's python is a symlink
            if os.path.isdir(form) and form.startswith("/tmp/"):
                found.add(form)
    # A folder inside another bound one comes with it.
    return sorted(p for p in found if not any(p != q and p.startswith(q + os.sep) for q in found))


def bwrap_command(
    argv: list[str],
    *,
    writable: list[str] = (),
    read_only: list[str] = (),
    share_network: bool = False,
) -> list[str]:
    """``argv`` wrapped in bubblewrap: read-only root, private ``/tmp``, ``/dev`` and ``/proc``.

    Args:
        writable: host paths bound read-write at the same place (after ``/tmp`` is made private).
        read_only: host paths re-bound read-only on top of a writable one.
        share_network: keep the host's network namespace (off: no network at all).
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("the sandbox provider needs bubblewrap: apt-get install bubblewrap")
    cmd = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in interpreter_paths():  # bound again over the private /tmp: a venv or clone may live there
        cmd += ["--ro-bind", path, path]
    for path in writable:
        cmd += ["--bind", path, path]
    for path in read_only:
        cmd += ["--ro-bind", path, path]
    cmd += ["--unshare-all"] + (["--share-net"] if share_network else [])
    cmd += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--setenv", "HOME", "/tmp", "--"]
    return cmd + list(argv)


class SandboxProvider(LocalProcessProvider):
    """:class:`~gym_openenv.providers.local.LocalProcessProvider` inside bubblewrap.

    Args:
        environment, env_kwargs, startup_timeout, server_args, env: as for the local provider.
        writable: more host paths the server may write (e.g. a data directory).
        share_network: let the server reach the network (it still serves on its Unix socket).
    """

    def __init__(
        self,
        environment: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        writable: list[str] | None = None,
        share_network: bool = False,
        **options: Any,
    ):
        if "uds" in options or "host" in options:
            raise ValueError("the sandbox provider always serves on a Unix socket of its own; drop uds=/host=")
        super().__init__(environment, env_kwargs, **options)
        self.writable = list(writable or [])
        self.share_network = share_network
        self._socket_dir: str | None = None

    def command(self) -> list[str]:
        # No --parent-pid: in its own PID namespace the server's parent is
        # bubblewrap's init, not us; --die-with-parent does that job instead.
        server = [sys.executable, "-m", "gym_openenv.server", self.environment, "--uds", self.uds]
        server += ["--env-kwargs", json.dumps(self.env_kwargs)] + self.server_args
        return bwrap_command(server, writable=[self._socket_dir, *self.writable], share_network=self.share_network)

    def _popen(self, command: list[str], **options: Any) -> subprocess.Popen:
        return _SPAWNER.submit(subprocess.Popen, command, **options).result()

    def start(self) -> str:
        if self.process is None:
            # Outside /tmp would do as well; the sandbox re-binds this directory over its private /tmp.
            self._socket_dir = tempfile.mkdtemp(prefix="openenv-sandbox-")
            self.uds = os.path.join(self._socket_dir, "server.sock")
        try:
            return super().start()
        except BaseException:
            self._remove_socket_dir()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        # The sandboxed processes are in a session of their own (--new-session), not
        # in bubblewrap's process group: they die with its init, asynchronously. Wait
        # for them, so that nothing outlives stop().
        inside = _descendants(self.pid) if self.process is not None else []
        super().stop(timeout)
        _, alive = psutil.wait_procs(inside, timeout=timeout)
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=timeout)
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        directory, self._socket_dir = self._socket_dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
