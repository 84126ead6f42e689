"""``create_app``: a FastAPI app that serves an environment over OpenEnv's protocol.

Routes (OpenEnv's, unchanged): ``GET /health``, ``POST /reset``, ``POST /step``,
``GET /state``, ``GET /schema``, ``GET /metadata``, ``WS /ws``; plus
``WS /ws/batch``, the batched binary extension advertised in ``/metadata``;
MCP JSON-RPC at ``POST /mcp`` and ``WS /mcp``, ``DELETE /mcp`` ending an MCP HTTP session (tools of an
:class:`~gym_openenv.server.mcp.MCPEnvironment`; a JSON-RPC error elsewhere);
with ``settings.web``, the ``/web`` page (:mod:`gym_openenv.server.web`).
As in OpenEnv, the HTTP ``/reset`` and ``/step`` routes are stateless (a fresh
environment per request); sessions live on the WebSockets.

Example:
    >>> from gym_openenv.servers.echo.server.environment import EchoEnvironment
    >>> app = create_app(EchoEnvironment)
    >>> sorted({r.path for r in app.routes if not r.path.startswith(("/docs", "/redoc", "/openapi"))})
    ['/health', '/mcp', '/metadata', '/reset', '/schema', '/state', '/step', '/ws', '/ws/batch']
"""

import asyncio
import contextlib
import hmac
import json
import logging
import os
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse

from gym_openenv.protocol import encode_json, observation_payload
from gym_openenv.server.batch_ws import serve_batch_connection
from gym_openenv.server.direct import DirectListener
from gym_openenv.server.environment import Environment
from gym_openenv.server.host import EnvHost, ServerSettings, StepTimeout
from gym_openenv.server.mcp import add_mcp_http_route, mcp_action, serve_mcp_websocket
from gym_openenv.server.limits import BodyLimit
from gym_openenv.server.openenv_ws import serve_openenv_session
from gym_openenv.server.web import add_web_routes, web_authorized

log = logging.getLogger("gym_openenv.server")

__all__ = ["create_app", "env_kwargs_from_environ"]

#: Seconds a stopping server waits for running steps to return so their environments close cleanly.
DRAIN_TIMEOUT = 3.0


def env_kwargs_from_environ() -> dict[str, Any]:
    """Environment arguments from ``OPENENV_ENV_KWARGS`` (JSON), as the
    launcher and Docker images pass them."""
    raw = os.environ.get("OPENENV_ENV_KWARGS", "")
    if not raw:
        return {}
    kwargs = json.loads(raw)
    if not isinstance(kwargs, dict):
        raise ValueError(f"OPENENV_ENV_KWARGS must be a JSON object, got {raw!r}")
    return kwargs


def create_app(
    env_cls: type[Environment],
    env_kwargs: dict[str, Any] | None = None,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """Build the server app for ``env_cls``.

    Args:
        env_cls: the environment class; one instance per session.
        env_kwargs: arguments for every instance (default: ``OPENENV_ENV_KWARGS``).
        settings: limits and auth (default: ``OPENENV_*`` variables, see :class:`ServerSettings`).
    """
    if not (isinstance(env_cls, type) and issubclass(env_cls, Environment)):
        raise TypeError(f"create_app needs an Environment subclass, got {env_cls!r}")
    host = EnvHost(env_cls, env_kwargs_from_environ() if env_kwargs is None else env_kwargs, settings or ServerSettings.from_environ())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        reaper = asyncio.create_task(host.sessions.reap_idle_forever())
        direct = None
        if host.settings.direct_socket:
            try:
                direct = DirectListener(host, asyncio.get_running_loop(), host.settings.direct_socket)
                host.direct_socket = direct.path
            except OSError as e:  # e.g. a container whose user may not write the mounted folder: serve without
                log.warning("no direct socket at %s (%s); clients use /ws/batch", host.settings.direct_socket, e)
        try:
            yield
        finally:
            reaper.cancel()
            if direct is not None:
                host.direct_socket = None
                direct.stop()
            await host.sessions.close_all()  # a close waits for its environment's running step
            stop_processes = getattr(app.state, "stop_environment_processes", None)
            if host.busy and stop_processes is not None:
                stop_processes()  # the launcher's: no one waits for these steps; end them, then close
            await host.drain(timeout=DRAIN_TIMEOUT)
            host.shutdown()

    app = FastAPI(title=f"{env_cls.__name__} (gym_openenv)", lifespan=lifespan)
    app.state.host = host
    # Inside the guard (added first): the routes read their bodies through it directly,
    # so its 413/408 reach FastAPI as HTTP errors, not wrapped in a middleware's task group.
    app.add_middleware(BodyLimit, max_bytes=host.settings.max_message_bytes, body_timeout=host.settings.body_timeout)
    _add_guards(app, host.settings)
    _add_http_routes(app, host)
    add_mcp_http_route(app, host)
    if host.settings.web:
        add_web_routes(app, host, bearer_authorized=lambda headers: _authorized(headers, host.settings.token))

    _add_websocket_routes(app, host)
    return app


def _authorized(headers: Any, token: str | None) -> bool:
    if token is None:
        return True
    given = headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _add_guards(app: FastAPI, settings: ServerSettings) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if not _authorized(request.headers, settings.token) and not (
            settings.web
            and web_authorized(request, settings.token)
        ):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        return await call_next(request)


def _add_websocket_routes(app: FastAPI, host: EnvHost) -> None:
    @app.websocket("/ws")
    async def openenv_session(ws: WebSocket) -> None:
        if await _admit(ws, host.settings.token):
            await serve_openenv_session(ws, host)

    @app.websocket("/mcp")
    async def mcp_session(ws: WebSocket) -> None:
        if await _admit(ws, host.settings.token):
            await serve_mcp_websocket(ws, host)

    @app.websocket("/ws/batch")
    async def batch_connection(ws: WebSocket) -> None:
        if await _admit(ws, host.settings.token):
            await serve_batch_connection(ws, host)


async def _admit(ws: WebSocket, token: str | None) -> bool:
    """Check the bearer token of a WebSocket handshake; refuse it with HTTP 401
    (close code 1008 where the server cannot send a status), so clients can
    tell a wrong token from a lost connection."""
    if _authorized(ws.headers, token):
        return True
    refusal = JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
    try:
        await ws.send_denial_response(refusal)
    except RuntimeError:  # no denial-response extension in this ASGI server
        await ws.close(code=1008, reason="missing or wrong bearer token")
    return False


def _add_http_routes(app: FastAPI, host: EnvHost) -> None:
    def openenv_response(payload: dict[str, Any]) -> JSONResponse:
        # OpenEnv's ResetResponse/StepResponse forbid extra keys: send exactly theirs.
        return json_response({k: payload[k] for k in ("observation", "reward", "done")})

    def json_response(data: Any) -> JSONResponse:
        # Observations may hold arrays and numpy scalars: encode them our way.
        return JSONResponse(content=json.loads(encode_json(data)))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "active_sessions": host.sessions.active, "max_sessions": host.settings.max_sessions}

    @app.get("/schema")
    async def schema() -> dict[str, Any]:
        specs = await host.specs()
        return {name: getattr(specs, name).json_schema() for name in ("action", "observation", "state")}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return await host.metadata()

    async def with_fresh_env(call: Any) -> Any:
        client = host.http_client
        try:
            env = await host.create_env(client)
        except StepTimeout as e:
            raise HTTPException(status_code=504, detail=str(e)) from None
        try:
            return await host.run(call, env, client=client, env=env, timeout=host.settings.step_timeout)
        except StepTimeout as e:
            raise HTTPException(status_code=504, detail=str(e)) from None
        finally:
            await host.close_env(env)  # once the call has returned, if it hung

    @app.post("/reset")
    async def reset(request: dict[str, Any] = Body(default_factory=dict)) -> JSONResponse:
        kwargs = host.reset_kwargs(request)
        observation = await with_fresh_env(lambda env: env.reset(**kwargs))
        return openenv_response(observation_payload(observation, keep_arrays=False))

    @app.post("/step")
    async def step(request: dict[str, Any] = Body(...)) -> JSONResponse:
        data = request.get("action")
        if not isinstance(data, dict):
            raise HTTPException(status_code=422, detail="body must be {'action': {...}}")
        try:
            action = mcp_action(host.env_cls, data) or (await host.specs()).action.build(data)
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        observation = await with_fresh_env(lambda env: env.step(action))
        return openenv_response(observation_payload(observation, keep_arrays=False))

    @app.get("/state")
    async def state() -> JSONResponse:
        return json_response(await with_fresh_env(lambda env: env.state))
