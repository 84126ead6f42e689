"""Everything one server process knows about the environment it serves.

:class:`EnvHost` builds environment instances from the class and the server's
keyword arguments, derives the model specs (hence the spaces and ``/schema``)
from the first instance, and runs every environment call in a worker thread
so the event loop never blocks on environment work.
"""

import asyncio
import inspect
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from gym_openenv.protocol import BATCH_CAPABILITY
from gym_openenv.server.environment import Environment, EnvironmentMetadata
from gym_openenv.server.sessions import SessionTable
from gym_openenv.spaces import ModelSpec

__all__ = ["EnvHost", "ModelSpecs", "ServerSettings", "StepTimeout"]


class StepTimeout(RuntimeError):
    """An environment call ran longer than the server's step timeout."""


@dataclass(frozen=True)
class ServerSettings:
    """Limits of one server process (flags of ``python -m gym_openenv.server``)."""

    max_sessions: int = 256
    idle_timeout: float | None = 600.0
    step_timeout: float | None = 300.0
    workers: int = 4
    max_message_bytes: int = 64 * 1024 * 1024
    token: str | None = None
    web: bool = False  # serve the /web page (gym_openenv.server.web)

    @classmethod
    def from_environ(cls, **overrides: Any) -> "ServerSettings":
        """Defaults, then ``OPENENV_*`` environment variables, then ``overrides``."""
        env = os.environ
        values: dict[str, Any] = {}
        if "OPENENV_MAX_SESSIONS" in env:
            values["max_sessions"] = int(env["OPENENV_MAX_SESSIONS"])
        if "OPENENV_IDLE_TIMEOUT" in env:
            values["idle_timeout"] = float(env["OPENENV_IDLE_TIMEOUT"])
        if "OPENENV_STEP_TIMEOUT" in env:
            values["step_timeout"] = float(env["OPENENV_STEP_TIMEOUT"])
        if env.get("OPENENV_TOKEN"):
            values["token"] = env["OPENENV_TOKEN"]
        if "OPENENV_WEB" in env:
            values["web"] = env["OPENENV_WEB"].strip().lower() in ("1", "true", "yes", "on")
        values.update({k: v for k, v in overrides.items() if v is not None})
        for limit in ("idle_timeout", "step_timeout"):  # 0 means no limit
            if values.get(limit) == 0:
                values[limit] = None
        return cls(**values)


@dataclass(frozen=True)
class ModelSpecs:
    action: ModelSpec
    observation: ModelSpec
    state: ModelSpec

    @classmethod
    def of(cls, env: Environment) -> "ModelSpecs":
        overrides = env.field_spaces()
        return cls(
            action=ModelSpec.from_model(env.action_type, overrides.get("action")),
            observation=ModelSpec.from_model(env.observation_type, overrides.get("observation")),
            state=ModelSpec.from_model(env.state_type, overrides.get("state")),
        )


class EnvHost:
    """Builds, runs and describes the environment of one server process."""

    def __init__(self, env_cls: type[Environment], env_kwargs: dict[str, Any], settings: ServerSettings):
        self.env_cls = env_cls
        self.env_kwargs = dict(env_kwargs)
        self.settings = settings
        self._executor: ThreadPoolExecutor | None = None
        self._specs: ModelSpecs | None = None
        self._metadata: EnvironmentMetadata | None = None
        self._reset_params = inspect.signature(env_cls.reset).parameters
        self.native_step_batch = env_cls.step_batch.__func__ is not Environment.step_batch.__func__
        self.sessions = SessionTable(self._create_env, self._close_env, settings.max_sessions, settings.idle_timeout)

    # running environment code

    async def run(self, fn: Any, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``fn`` in a worker thread; raise :class:`StepTimeout` past ``timeout``."""
        if self._executor is None:  # created on first use, so an app can start again after shutdown
            self._executor = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="openenv-env")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise StepTimeout(f"{getattr(fn, '__qualname__', fn)} did not finish within {timeout}s") from None

    async def _create_env(self) -> Environment:
        env = await self.run(self.env_cls, **self.env_kwargs)
        if self._specs is None:
            self._learn(env)
        return env

    async def _close_env(self, env: Environment) -> None:
        await self.run(env.close, timeout=30)

    def _learn(self, env: Environment) -> None:
        self._specs = ModelSpecs.of(env)
        self._metadata = env.metadata()

    async def _probe(self) -> None:
        env = await self.run(self.env_cls, **self.env_kwargs)
        try:
            self._learn(env)
        finally:
            await self._close_env(env)

    # what the server says about itself

    async def specs(self) -> ModelSpecs:
        if self._specs is None:
            await self._probe()
        return self._specs

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            await self._probe()
        meta = asdict(self._metadata)
        extra = meta.pop("extra")
        meta.update(extra)
        meta["capabilities"] = [BATCH_CAPABILITY, "stream-step"]
        meta["max_sessions"] = self.settings.max_sessions
        meta["native_step_batch"] = self.native_step_batch
        return meta

    def reset_kwargs(self, data: dict[str, Any]) -> dict[str, Any]:
        """The reset arguments the environment accepts (OpenEnv drops the rest too)."""
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self._reset_params.values()):
            return dict(data)
        return {k: v for k, v in data.items() if k in self._reset_params}

    def shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
