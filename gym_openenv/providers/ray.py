"""Run the server as a Ray actor, anywhere in a Ray cluster.

Example:
    >>> envs = gym.make_vec("openenv/atari-v0", num_envs=64, provider="ray",
    ...                     num_servers=8)                                   # doctest: +SKIP

Each provider creates one :class:`ServerActor`. The actor starts the server
as its own child process (the local provider, bound to the node's address,
so other nodes reach it), returns the URL, and the client connects to that
server directly: Ray places servers, it does not carry their traffic. The
vector env starts ``num_servers`` providers, so its sessions spread over that
many actors; the ``SPREAD`` strategy puts them on different nodes where it
can. The server exits with its actor (it watches the actor's pid), the actor
is killed on :meth:`~RayProvider.stop`, and Ray kills every actor of a driver
that exits.

Ray is connected on first use: ``address=`` or ``$RAY_ADDRESS`` for an
existing cluster, otherwise ``ray.init()`` starts a local one that lives as
long as this process.
"""

import os
import threading
from typing import Any

import ray

from gym_openenv.errors import ServerStartError
from gym_openenv.providers.base import Provider
from gym_openenv.providers.local import LocalProcessProvider

__all__ = ["RayProvider", "ServerActor"]

_INIT_LOCK = threading.Lock()


class ServerActor:
    """Holds one environment server process on the node Ray placed it on."""

    def __init__(self, environment: str, env_kwargs: dict[str, Any], options: dict[str, Any]):
        host = options.pop("host", None) or ray.util.get_node_ip_address()
        self.server = LocalProcessProvider(environment, env_kwargs, host=host, **options)

    def start(self) -> dict[str, Any]:
        return {"url": self.server.start(), "server_pid": self.server.pid, "actor_pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def health(self) -> bool:
        return self.server.health()

    def logs(self) -> str:
        return self.server.logs()

    def stop(self) -> None:
        self.server.stop()


_RemoteServerActor = ray.remote(ServerActor)


def _connect(address: str | None) -> None:
    with _INIT_LOCK:  # the vector env starts its providers from several threads
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)


class RayProvider(Provider):
    """Run an environment server in a Ray actor.

    Args:
        environment: the Environment class, ``"module:Class"`` (importable on the worker nodes:
            install the package there, or ship it with ``runtime_env={"working_dir": ...}``).
        env_kwargs: arguments for the environment.
        address: Ray cluster to connect to if Ray is not initialized (default ``$RAY_ADDRESS``, else a local one).
        num_cpus: CPUs the actor reserves (one server per core by default).
        resources: custom Ray resources the actor needs (``{"atari_node": 1}``).
        scheduling_strategy: Ray scheduling strategy (default ``"SPREAD"``: different nodes where possible).
        runtime_env: Ray runtime environment for the actor.
        startup_timeout: seconds for the actor to be placed and the server to answer.
        host: address the server binds (default: the node's IP, which the driver reaches).
        server_args, env: as for :class:`~gym_openenv.providers.local.LocalProcessProvider`;
            ``$OPENENV_TOKEN`` of this process is passed on, so remote servers demand the token it sends.
    """

    def __init__(
        self,
        environment: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        address: str | None = None,
        num_cpus: float = 1,
        resources: dict[str, float] | None = None,
        scheduling_strategy: Any = "SPREAD",
        runtime_env: dict[str, Any] | None = None,
        startup_timeout: float = 120.0,
        host: str | None = None,
        server_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.environment = environment
        self.env_kwargs = dict(env_kwargs or {})
        self.address = address
        self.actor_options = {"num_cpus": num_cpus, "scheduling_strategy": scheduling_strategy, "max_restarts": 0}
        if resources:
            self.actor_options["resources"] = dict(resources)
        if runtime_env:
            self.actor_options["runtime_env"] = runtime_env
        self.startup_timeout = startup_timeout
        env = dict(env or {})
        if os.environ.get("OPENENV_TOKEN"):
            env.setdefault("OPENENV_TOKEN", os.environ["OPENENV_TOKEN"])
        self.server_options = {"host": host, "server_args": list(server_args or []), "env": env, "startup_timeout": startup_timeout}
        self.actor: Any = None
        #: where the server runs: url, server_pid, actor_pid, node_id (set by start()).
        self.placement: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> str:
        with self._lock:
            if self.actor is not None:
                return self.base_url
            _connect(self.address)
            self.actor = _RemoteServerActor.options(**self.actor_options).remote(self.environment, self.env_kwargs, dict(self.server_options))
            try:
                # Placement can wait for a node with free CPUs: the timeout covers both.
                self.placement = ray.get(self.actor.start.remote(), timeout=self.startup_timeout)
            except ray.exceptions.GetTimeoutError:
                self._kill()
                raise ServerStartError(
                    f"{self.environment}: no Ray actor started within {self.startup_timeout}s "
                    f"(cluster resources: {ray.available_resources()}; the actor asks for {self.actor_options})"
                ) from None
            except ray.exceptions.RayError as e:
                self._kill()
                raise ServerStartError(f"{self.environment}: server actor failed to start:\n{e}") from None
            self.base_url = self.placement["url"]
            return self.base_url

    def logs(self) -> str:
        if self.actor is None:
            return ""
        try:
            return ray.get(self.actor.logs.remote(), timeout=10)
        except ray.exceptions.RayError:
            return ""

    def stop(self) -> None:
        with self._lock:
            if self.actor is None:
                return
            try:
                ray.get(self.actor.stop.remote(), timeout=15)  # the server first, so it does not wait for its watchdog
            except ray.exceptions.RayError:
                pass  # the actor is already gone; its server exits by itself (it watches the actor)
            self._kill()

    def _kill(self) -> None:
        actor, self.actor = self.actor, None
        self.base_url = None
        if actor is not None and ray.is_initialized():
            ray.kill(actor, no_restart=True)
