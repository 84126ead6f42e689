"""Run the server as a Ray actor, anywhere in a Ray cluster.

Example:
    >>> envs = gym.make_vec("openenv/atari-v0", num_envs=64, provider="ray",
    ...                     num_servers=8, provider_options={"num_cpus": 0.5})  # a Ray cluster  # doctest: +SKIP

Each provider creates one :class:`ServerActor`. The actor starts the server
as its own child process (the local provider, bound to the node's address,
so other nodes reach it), returns the URL, and the client connects to that
server directly: Ray places servers, it does not carry their traffic. The
vector env starts ``num_servers`` providers, so its sessions spread over that
many actors; the ``SPREAD`` strategy puts them on different nodes where it
can. The server exits with its actor (it watches the actor's pid), the actor
is killed on :meth:`~RayProvider.stop`, and Ray kills every actor of a driver
that exits.

A server on a node's address is reachable from the whole network, so it
always demands a bearer token: ``$OPENENV_TOKEN`` if set, otherwise one drawn
at random for this driver process (the clients it makes send it).

Ray is connected on first use: ``address=`` or ``$RAY_ADDRESS`` for an
existing cluster, otherwise ``ray.init()`` starts a local one that lives as
long as this process.
"""

import os
import secrets
import threading
from typing import Any

import ray

from gym_openenv.errors import ServerStartError
from gym_openenv.providers.base import Provider
from gym_openenv.providers.local import LocalProcessProvider

__all__ = ["RayProvider", "ServerActor"]

_INIT_LOCK = threading.Lock()
_DRIVER_TOKEN: list[str] = []  # drawn once per process, shared by all its servers


class ServerActor:
    """Holds one environment server process on the node Ray placed it on."""

    def __init__(self, environment: str, env_kwargs: dict[str, Any], options: dict[str, Any]):
        host = options.pop("host", None) or ray.util.get_node_ip_address()
        self.server = LocalProcessProvider(environment, env_kwargs, host=host, **options)

    def start(self) -> dict[str, Any]:
        return {
            "url": self.server.start(),
            "server_pid": self.server.pid,
            "actor_pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

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


def _driver_token() -> str:
    with _INIT_LOCK:
        if not _DRIVER_TOKEN:
            _DRIVER_TOKEN.append(secrets.token_urlsafe(32))
        return _DRIVER_TOKEN[0]


class RayProvider(Provider):
    """Run an environment server in a Ray actor.

    The actor asks Ray for what one server needs (``num_cpus``, ``num_gpus``,
    ``memory``, custom ``resources``); Ray places it on a node that has them.
    The default, one CPU, fits as many servers on a node as it has cores.

    Args:
        environment: the Environment class, ``"module:Class"`` (importable on the worker nodes:
            install the package there, or ship it with ``runtime_env={"working_dir": ...}``).
        env_kwargs: arguments for the environment.
        address: Ray cluster to connect to if Ray is not initialized (default ``$RAY_ADDRESS``, else a local one).
        num_cpus: CPUs the actor reserves; a fraction packs several servers per core.
        num_gpus: GPUs the actor reserves.
        memory: bytes of memory the actor reserves (Ray's ``memory`` resource).
        resources: custom Ray resources the actor needs (``{"chromium_slot": 1}``).
        scheduling_strategy: Ray scheduling strategy (default ``"SPREAD"``: different nodes where possible).
        runtime_env: Ray runtime environment for the actor.
        startup_timeout: seconds for the actor to be placed and the server to answer.
        replacement_timeout: when a server is lost, seconds its replacement may take to come
            up before the vector env moves the lost server's envs to the surviving servers
            (the replacement keeps waiting for room, and takes envs back once it is up);
            ``None`` waits ``startup_timeout`` and never moves envs.
        host: address the server binds (default: the node's IP, which the driver reaches).
        server_args, env: as for :class:`~gym_openenv.providers.local.LocalProcessProvider`.
            The server demands ``env["OPENENV_TOKEN"]``, else ``$OPENENV_TOKEN``, else a token
            drawn at random once per driver process.
    """

    def __init__(
        self,
        environment: str,
        env_kwargs: dict[str, Any] | None = None,
        *,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        scheduling_strategy: Any = "SPREAD",
        runtime_env: dict[str, Any] | None = None,
        startup_timeout: float = 120.0,
        replacement_timeout: float | None = 5.0,
        host: str | None = None,
        server_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        if num_cpus < 0 or num_gpus < 0 or (memory is not None and memory <= 0):
            raise ValueError(f"num_cpus and num_gpus must be >= 0 and memory > 0, got {num_cpus}, {num_gpus}, {memory}")
        if replacement_timeout is not None and replacement_timeout < 0:
            raise ValueError(f"replacement_timeout must be >= 0 or None, got {replacement_timeout}")
        self.environment = environment
        self.env_kwargs = dict(env_kwargs or {})
        self.address = address
        self.actor_options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "scheduling_strategy": scheduling_strategy,
            "max_restarts": 0,  # a lost server is replaced by the vector env, with fresh sessions
        }
        if memory:
            self.actor_options["memory"] = memory
        if resources:
            self.actor_options["resources"] = dict(resources)
        if runtime_env:
            self.actor_options["runtime_env"] = runtime_env
        self.startup_timeout = startup_timeout
        self.replacement_timeout = replacement_timeout
        env = dict(env or {})
        self.token = env.get("OPENENV_TOKEN") or os.environ.get("OPENENV_TOKEN") or _driver_token()
        env["OPENENV_TOKEN"] = self.token
        self.server_options = {"host": host, "server_args": list(server_args or []), "env": env, "startup_timeout": startup_timeout}
        self.actor: Any = None
        #: where the server runs: url, server_pid, actor_pid, node_id (set by start()).
        self.placement: dict[str, Any] = {}
        self._starting: Any = None  # the ObjectRef of the actor's start() while placement is pending
        self._lock = threading.Lock()

    def start(self) -> str:
        with self._lock:
            if self.base_url is not None:
                return self.base_url
            if self.actor is None:
                _connect(self.address)
                self.actor = _RemoteServerActor.options(**self.actor_options).remote(self.environment, self.env_kwargs, dict(self.server_options))
                self._starting = self.actor.start.remote()
            actor, starting = self.actor, self._starting
        # Wait without the lock, so stop() can cancel an actor that is still waiting for room.
        try:
            placement = ray.get(starting, timeout=self.startup_timeout)  # covers placement and the server's start
        except ray.exceptions.GetTimeoutError:
            self._kill_if_current(actor)
            raise ServerStartError(
                f"{self.environment}: no Ray actor started within {self.startup_timeout}s "
                f"(cluster resources free: {ray.available_resources()}; the actor asks for {self._ask()})"
            ) from None
        except ray.exceptions.RayError as e:
            if not self._kill_if_current(actor):
                raise ServerStartError(f"{self.environment}: stopped before its Ray actor started") from None
            raise ServerStartError(f"{self.environment}: server actor failed to start:\n{e}") from None
        with self._lock:
            if self.actor is not actor:
                raise ServerStartError(f"{self.environment}: stopped before its Ray actor started")
            self.placement, self.base_url, self._starting = placement, placement["url"], None
            return self.base_url

    def _ask(self) -> dict[str, Any]:
        return {k: v for k, v in self.actor_options.items() if k in ("num_cpus", "num_gpus", "memory", "resources") and v}

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
            if self.base_url is not None:
                try:
                    ray.get(self.actor.stop.remote(), timeout=15)  # the server first, so it does not wait for its watchdog
                except ray.exceptions.RayError:
                    pass  # the actor is already gone; its server exits by itself (it watches the actor)
            self._kill()

    def _kill_if_current(self, actor: Any) -> bool:
        """Kill ``actor`` if it is still this provider's; False if stop() already did."""
        with self._lock:
            if self.actor is not actor:
                return False
            self._kill()
            return True

    def _kill(self) -> None:
        actor, self.actor = self.actor, None
        self.base_url, self._starting = None, None
        if actor is not None and ray.is_initialized():
            ray.kill(actor, no_restart=True)  # also cancels an actor still waiting to be placed
