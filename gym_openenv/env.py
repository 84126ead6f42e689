"""``OpenEnvEnv``: a ``gymnasium.Env`` whose simulation runs in an environment server.

Example:
    >>> import gymnasium as gym, gym_openenv
    >>> env = gym.make("openenv/echo-v0")
    >>> env.reset(seed=0)
    ('', {'message_length': 0})
    >>> env.step("hi")[:2]
    ('hi', 0.2)
    >>> env.close()
"""

import atexit
import dataclasses
import itertools
import os
import shutil
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_openenv.blocking_ws import BlockingSession, served_without_loop
from gym_openenv.client import DEFAULT_TIMEOUT, AsyncSession, BatchSession, LoopThread, fetch_json
from gym_openenv.direct import DirectSession
from gym_openenv.endpoint import Endpoint
from gym_openenv.errors import ConnectionLost, OpenEnvError, RequestTimeout
from gym_openenv.protocol import BATCH_CAPABILITY
from gym_openenv.providers import Provider, make_provider
from gym_openenv.registry import load_registry
from gym_openenv.schema import EnvSchema

__all__ = ["OpenEnvEnv", "end_session", "resolve_server"]


def resolve_server(
    environment: str | None,
    env_kwargs: dict[str, Any],
    url: str | None,
    provider: "str | Provider | None",
    provider_options: dict[str, Any] | None,
    token: str | None = None,
) -> tuple[str, Provider]:
    """(base URL, provider) for the arguments of a gym id; ``provider.stop()`` undoes it.

    ``url`` connects to a running server (a remote provider: it retries with
    backoff and stops nothing); otherwise ``provider`` (a name, an instance,
    ``$OPENENV_PROVIDER``, or the registry entry's first hint) starts one. A
    ``local`` server listens on a Unix socket unless ``provider_options`` name a
    ``host`` or ``uds``.
    """
    options = dict(provider_options or {})
    if url is not None:
        if provider not in (None, "remote"):
            raise ValueError("pass either url= (a running server) or provider=, not both")
        if token is not None:
            options.setdefault("token", token)
        started = make_provider("remote", environment, env_kwargs, url=url, **options)
        return started.start(), started
    if isinstance(provider, Provider):
        return provider.start(), provider
    if environment is None:
        raise ValueError("openenv/remote-v0 needs url=... (the base URL of a running OpenEnv server)")
    hints = _provider_hints(environment)
    kind = provider or os.environ.get("OPENENV_PROVIDER") or (hints[0] if hints else "local")
    if hints and kind not in hints:
        raise ValueError(f"{environment} cannot run on provider {kind!r}; registry.yaml allows {', '.join(hints)}")
    if kind == "local" and not {"host", "uds"} & options.keys():
        # A Unix socket: the server is ours and on this machine, and a local socket costs
        # far less per message than TCP over loopback (the kernel's TCP path dominated a step).
        options["uds"] = _socket_path()
    started = make_provider(kind, environment, env_kwargs, **options)
    return started.start(), started


_SOCKETS: dict[str, Any] = {}


def _socket_path() -> str:
    """A fresh socket path in this process's private folder (removed at exit)."""
    if "dir" not in _SOCKETS:
        _SOCKETS["dir"] = tempfile.mkdtemp(prefix="gym-openenv-")
        _SOCKETS["next"] = itertools.count()
        atexit.register(shutil.rmtree, _SOCKETS["dir"], ignore_errors=True)
    return os.path.join(_SOCKETS["dir"], f"server-{next(_SOCKETS['next'])}.sock")


def _provider_hints(environment: str) -> tuple[str, ...]:
    """The registry's ``providers`` list for an environment class, if it is registered."""
    for entry in load_registry():
        if entry.environment == environment:
            return entry.providers
    return ()


async def _server_metadata(base_url: str, token: str | None) -> dict[str, Any]:
    try:
        meta = await fetch_json(base_url, "/metadata", token)
    except OpenEnvError:
        return {}  # /metadata is optional in OpenEnv
    return meta if isinstance(meta, dict) else {}


def _is_image(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[2] in (1, 3)


def _called(result: Any) -> Any:
    """A blocking session's call result (:class:`DirectSession`, :class:`BlockingSession`),
    which is there already (no loop to run it on)."""
    return result


def end_session(loop: LoopThread, session: Any, provider: Provider | None) -> None:
    """Close a session, then stop the server its provider started (if any)."""
    if isinstance(session, (DirectSession, BlockingSession)):
        session.close()
    elif session is not None:
        try:
            loop.run(session.close(), 10)
        except Exception:  # a dead server has nothing left to close; the provider still stops below
            pass
    if provider is not None:
        provider.stop()


class OpenEnvEnv(gym.Env):
    """One session on an environment server, as a gymnasium environment.

    Spaces come from the server's ``/schema``; ``reset(seed=...)`` passes the
    seed to the server; observation fields outside the space and the server's
    ``metadata`` arrive in ``info``.

    Args:
        environment: the Environment class, ``"module:Class"`` (set by the registry).
        url: connect to this running server instead of starting one.
        provider: where to start the server: ``"local"`` (default), ``"docker"``,
            ``"sandbox"``, ``"ray"``, or a :class:`~gym_openenv.providers.Provider`.
        provider_options: arguments for the provider.
        render_mode: ``"rgb_array"`` returns the last image observation.
        timeout: seconds to wait for any reply.
        token: bearer token (default ``$OPENENV_TOKEN``).
        reconnect: if the server crashed, ``reset()`` restarts it (or reconnects to
            ``url``) instead of raising. A dropped connection to a live server is
            always re-established at ``reset()``; mid-episode it is reported as a lost episode.
        action_space, observation_space: replace the spaces derived from the server's schema
            (a space, or ``{field: space}``); checked against the schema (see :mod:`gym_openenv.schema`).
        hints: use the built-in spaces of well-known upstream environments (:mod:`gym_openenv.hints`).
        protocol: ``"auto"`` (the batched binary protocol, a batch of one, where the server
            offers it; OpenEnv's JSON protocol otherwise), ``"batch"`` or ``"openenv"``.
        shared_memory: take large arrays from a server on this machine through shared memory.
        direct: talk to a server on this machine over its direct socket, from the calling
            thread (:mod:`gym_openenv.direct`), where it offers one.
        **env_kwargs: arguments for the environment (``game="breakout"``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    _spec = None

    def __init__(
        self,
        environment: str | None = None,
        *,
        url: str | None = None,
        provider: "str | Provider | None" = None,
        provider_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        reconnect: bool = False,
        action_space: Any = None,
        observation_space: Any = None,
        hints: bool = True,
        protocol: str = "auto",
        shared_memory: bool = True,
        direct: bool = True,
        **env_kwargs: Any,
    ):
        self.render_mode = render_mode
        self.reconnect = reconnect
        self._episode_lost: str | None = None
        self.timeout = timeout
        self._loop = LoopThread.shared()
        self._provider: Provider | None = None
        self._session: AsyncSession | BatchSession | DirectSession | BlockingSession | None = None
        self.base_url, self._provider = resolve_server(environment, env_kwargs, url, provider, provider_options, token)
        try:
            token = token or getattr(self._provider, "token", None) or os.environ.get("OPENENV_TOKEN")
            self.schema = self._loop.run(
                EnvSchema.fetch(self.base_url, token, action_space=action_space, observation_space=observation_space, hints=hints), timeout
            )
            self.action_space = self.schema.action.space
            self.observation_space = self.schema.observation.space
            # Only image observations can be rendered; advertise what this instance can do.
            self.metadata = {**type(self).metadata, "render_modes": ["rgb_array"] if _is_image(self.observation_space) else []}
            if render_mode is not None and render_mode not in self.metadata["render_modes"]:
                raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
            if protocol not in ("auto", "batch", "openenv"):
                raise ValueError(f"protocol must be 'auto', 'batch' or 'openenv', got {protocol!r}")
            self._protocol, self._shared_memory, self._direct = protocol, shared_memory, direct
            self._session = self._new_session(token)
        except BaseException:
            self.close()
            raise
        self._last_obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        kwargs = dict(options or {})
        if seed is not None:
            kwargs["seed"] = int(seed)
        try:
            payload = self._run(self._session.reset(**kwargs))
        except ConnectionLost:
            if self.reconnect:
                self._restart_server()
            elif isinstance(self._session, DirectSession):  # the server may be back, with a new socket
                self._session = self._new_session(self._session.token)
            else:
                raise
            payload = self._run(self._session.reset(**kwargs))
        self._episode_lost = None
        obs, _, _, _, info = self.schema.step_tuple(payload, reset=True)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        fields = self.schema.action.wire_fields(action)  # ValueError before anything is sent
        if self._episode_lost:
            raise ConnectionLost(f"{self._episode_lost}; the episode is lost, call reset() to start a new one")
        try:
            payload = self._run(self._session.step(fields))
        except (ConnectionLost, RequestTimeout) as e:
            # The connection is gone (or in an unknown state): this episode cannot continue.
            self._episode_lost = str(e)
            raise type(e)(f"{e}; the episode is lost, call reset() to start a new one") from e
        result = self.schema.step_tuple(payload)
        self._last_obs = result[0]
        return result

    def _restart_server(self) -> None:
        if self._provider is not None:
            self._provider.stop()
            self.base_url = self._provider.start()
        self._session = self._new_session(self._session.token)

    def _new_session(self, token: str | None) -> "AsyncSession | BatchSession | DirectSession | BlockingSession":
        """A connected session: a batch of one on the binary protocol where the server offers
        it (on its direct socket where in reach), else an OpenEnv JSON session (driven from
        this thread on ``ws://`` and Unix sockets, on the event loop for ``wss://``)."""
        meta = self._loop.run(_server_metadata(self.base_url, token), self.timeout) if self._protocol != "openenv" else {}
        batched = self._protocol == "batch" or (self._protocol == "auto" and BATCH_CAPABILITY in (meta.get("capabilities") or []))
        if batched and self._direct and DirectSession.reachable(meta, self.base_url):
            session = DirectSession(meta, self.base_url, timeout=self.timeout, token=token, shared_memory=self._shared_memory)
            try:
                self._run = _called  # its calls block in this thread
                return session.connect()
            except ConnectionLost:
                pass  # out of reach after all (a container's socket): the WebSocket below
        if not batched and served_without_loop(Endpoint.parse(self.base_url, token)):
            self._run = _called  # OpenEnv JSON from this thread (gym_openenv.blocking_ws)
            return BlockingSession(self.base_url, timeout=self.timeout, token=token).connect()
        session = (BatchSession if batched else AsyncSession)(self.base_url, timeout=self.timeout, token=token, **({"shared_memory": self._shared_memory} if batched else {}))
        self._run = self._loop.run
        self._loop.run(session.connect(), self.timeout)
        return session

    @property
    def spec(self) -> "gym.envs.registration.EnvSpec | None":
        return self._spec

    @spec.setter
    def spec(self, spec: "gym.envs.registration.EnvSpec | None") -> None:
        # A server that declares itself deterministic (/metadata) overrides remote-v0's default.
        deterministic = getattr(getattr(self, "schema", None), "deterministic", None)
        if spec is not None and deterministic is not None and spec.nondeterministic == deterministic:
            spec = dataclasses.replace(spec, nondeterministic=not deterministic)
        self._spec = spec

    def state(self) -> dict[str, Any]:
        """The session's state (``episode_id``, ``step_count``, ...), as the server reports it."""
        return self._run(self._session.state())

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._last_obs

    def close(self) -> None:
        session, self._session = self._session, None
        provider, self._provider = self._provider, None
        end_session(self._loop, session, provider)
        super().close()

    def __del__(self) -> None:  # safety net only; close() is the API
        if getattr(self, "_provider", None) is not None:
            self._provider.stop()
