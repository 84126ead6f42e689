"""The embedded default: the server runs as a child process of this one.

The child binds port 0 (or a Unix socket) itself and reports its URL, so
there is no race for a free port. It is stopped on :meth:`~LocalProcessProvider.stop`,
at interpreter exit, and it exits by itself when this process dies, even by
``kill -9`` (it watches its parent). Its process group goes with it, so
sandboxes or browsers it started do not outlive it.
"""

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any

from gym_openenv.errors import ServerStartError
from gym_openenv.providers.base import Provider

__all__ = ["LocalProcessProvider"]

_LISTENING = "OPENENV_LISTENING"
_LIVE: "weakref.WeakSet[LocalProcessProvider]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for provider in list(_LIVE):
        provider.stop()


class LocalProcessProvider(Provider):
    """Run ``python -m gym_openenv.server <environment>`` as a child process.

    Args:
        environment: the Environment class as ``"module:Class"``.
        env_kwargs: arguments for the environment (JSON-serializable).
        host: address to bind; loopback by default.
        uds: serve on this Unix socket path instead of TCP.
        startup_timeout: seconds to wait for ``/health``.
        server_args: extra flags for the launcher (``--max-sessions 512``).
        env: extra environment variables for the child.
    """

    def __init__(
        self,
        environment: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        uds: str | None = None,
        startup_timeout: float = 60.0,
        server_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.environment = environment
        self.env_kwargs = dict(env_kwargs or {})
        self.host = host
        self.uds = uds
        self.startup_timeout = startup_timeout
        self.server_args = list(server_args or [])
        self.extra_env = dict(env or {})
        self.token = self.extra_env.get("OPENENV_TOKEN") or os.environ.get("OPENENV_TOKEN")
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile(mode="w+b")
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "gym_openenv.server", self.environment, "--parent-pid", str(os.getpid())]
        cmd += ["--uds", self.uds] if self.uds else ["--host", self.host, "--port", "0"]
        return cmd + ["--env-kwargs", json.dumps(self.env_kwargs)] + self.server_args

    def start(self) -> str:
        with self._lock:
            if self.process is not None:
                return self.base_url
            env = {**os.environ, **self.extra_env}
            # The repo root on the path, so servers.<name> imports in the child as it does here.
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
            self.process = self._popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=self._log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own group, so stop() takes its children too
            )
            _LIVE.add(self)
            try:
                self.base_url = self._await_url()
                self._await_health()
            except BaseException:
                self._kill()
                raise
            return self.base_url

    def _popen(self, command: list[str], **options: Any) -> subprocess.Popen:
        """Start the child (subclasses may change how, e.g. from which thread)."""
        return subprocess.Popen(command, **options)

    def _await_url(self) -> str:
        deadline = time.monotonic() + self.startup_timeout
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline().decode()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        line = result[0] if result else ""
        if not line.startswith(_LISTENING):
            if time.monotonic() >= deadline and self.process.poll() is None:
                raise ServerStartError(f"{self.environment}: server did not report its address within {self.startup_timeout}s\n{self.logs()}")
            self.process.wait(timeout=5)
            raise ServerStartError(
                f"{self.environment}: server exited with code {self.process.returncode} before listening\n{self.logs()}"
            )
        # Keep draining stdout so a chatty server never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        return line.split(maxsplit=1)[1].strip()

    def _await_health(self) -> None:
        def stopped() -> str | None:
            if self.process.poll() is None:
                return None
            return f"{self.environment}: server exited with code {self.process.returncode}\n{self.logs()}"

        try:
            self.endpoint.wait_healthy(self.startup_timeout, stopped=stopped, max_backoff=0.5)
        except ServerStartError as e:
            if self.process.poll() is not None:
                raise
            raise ServerStartError(f"{self.environment}: {e}\n{self.logs()}") from None

    def logs(self, limit: int = 4000) -> str:
        """The tail of the server's stderr."""
        try:
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit))
            return self._log.read().decode(errors="replace")
        except (ValueError, OSError):
            return ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self.process is None:
                return
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGTERM)
                    os.killpg(self.process.pid, signal.SIGCONT)  # a frozen (stopped) server handles the TERM too
                except ProcessLookupError:
                    pass
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()

    def _kill(self) -> None:
        # Whatever is left of the group (the server, or its children) goes now.
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()
        self.process = None
        _LIVE.discard(self)
