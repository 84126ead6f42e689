"""MCP tool environments: tools declared as typed Python methods, served the OpenEnv way.

An :class:`MCPEnvironment` is an environment whose actions are tool calls.
Its tools are methods marked with :func:`tool`; their signatures and
docstrings become MCP tool schemas through FastMCP, which also validates the
arguments of every call. Agents reach the tools on three paths, as in OpenEnv:

* ``step`` with :class:`CallToolAction` / :class:`ListToolsAction` (over ``/ws``,
  ``POST /step``): tool calls that count as steps, with reward and ``done``;
* MCP JSON-RPC ``tools/list`` and ``tools/call`` at ``POST /mcp`` (one fresh
  environment per request, or a session made with ``openenv/session/create``)
  and ``WS /mcp`` (one session per connection); ``POST /mcp`` also answers
  MCP's ``initialize`` handshake, so a standard MCP client (fastmcp's
  ``Client("http://host/mcp")``) calls the tools too;
* ``{"type": "mcp", "data": <JSON-RPC request>}`` on ``/ws``, inside the session.

JSON-RPC messages are MCP's own wire models (``mcp_types``, the MCP SDK's
types); tools run through ``fastmcp``. Both are imported on first use, so a
server without tools starts no slower.

Example:
    >>> class Counter(MCPEnvironment):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self._state, self.total = State(), 0
    ...     @tool
    ...     def add(self, amount: int) -> int:
    ...         '''Add to the total; returns the new total.'''
    ...         self.total += amount
    ...         return self.total
    ...     def reset(self, seed=None, episode_id=None, **kwargs):
    ...         self._state, self.total = State(episode_id=episode_id), 0
    ...         return CallToolObservation()
    ...     @property
    ...     def state(self):
    ...         return self._state
    >>> env = Counter()
    >>> [t["name"] for t in env.step(ListToolsAction()).tools]
    ['add']
    >>> env.step(CallToolAction(tool_name="add", arguments={"amount": 2})).result["data"]
    2
    >>> env.step(CallToolAction(tool_name="add", arguments={"amount": "x"})).error["error_type"]
    'invalid_args'
"""

import asyncio
import dataclasses
import json
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from gym_openenv.models import Action, Observation, State
from gym_openenv.server.environment import Environment

if TYPE_CHECKING:  # imported where used, so the gym side (gym_openenv.tools) imports this module cheaply
    import mcp_types
    from fastapi import FastAPI, WebSocket
    from fastmcp import FastMCP

    from gym_openenv.server.host import EnvHost
    from gym_openenv.server.sessions import Session

__all__ = [
    "CallToolAction",
    "CallToolObservation",
    "ListToolsAction",
    "ListToolsObservation",
    "MCPEnvironment",
    "MCPMessage",
    "RESERVED_TOOL_NAMES",
    "ToolErrorType",
    "add_mcp_http_route",
    "mcp_action",
    "on_mcp_message",
    "serve_mcp_websocket",
    "tool",
]

#: Tool names that would shadow the environment's own API (OpenEnv reserves them too).
RESERVED_TOOL_NAMES = frozenset({"reset", "step", "state", "close"})
_TOOL_MARK = "__gym_openenv_tool__"


def tool(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a method of an :class:`MCPEnvironment` subclass as a tool.

    The tool's name is the method's, its description the docstring, its
    input schema the typed parameters (FastMCP derives it).
    """
    setattr(method, _TOOL_MARK, True)
    return method


# --- actions and observations (OpenEnv's field names) -------------------------


@dataclass(kw_only=True)
class ListToolsAction(Action):
    """Ask for the tools and their input schemas."""

    type: Literal["list_tools"] = "list_tools"


@dataclass(kw_only=True)
class CallToolAction(Action):
    """Call ``tool_name`` with ``arguments`` (checked against the tool's input schema)."""

    type: Literal["call_tool"] = "call_tool"
    tool_name: str
    arguments: dict[str, Any] = field(default_factory=dict)


class ToolErrorType(str, Enum):
    """Why a tool call produced no result (OpenEnv's categories)."""

    EXECUTION_ERROR = "execution_error"
    INVALID_ARGS = "invalid_args"
    TOOL_NOT_FOUND = "tool_not_found"
    TIMEOUT = "timeout"


@dataclass(kw_only=True)
class ListToolsObservation(Observation):
    """``tools``: ``{"name", "description", "input_schema"}`` per tool."""

    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(kw_only=True)
class CallToolObservation(Observation):
    """The outcome of one tool call.

    ``result`` holds the MCP result: ``content`` (text and other blocks),
    ``structured_content``, ``data`` (the tool's return value) and ``is_error``.
    ``error`` (``{"error_type", "message"}``) is set instead when the call
    did not run: unknown tool, arguments that do not fit the schema, or a tool
    that raised.
    """

    tool_name: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None


_ACTION_TYPES: dict[str, type[Action]] = {"list_tools": ListToolsAction, "call_tool": CallToolAction}


def mcp_action(env_cls: type, data: Any) -> Action | None:
    """The MCP action an OpenEnv step payload asks an :class:`MCPEnvironment` for, else None.

    Raises:
        ValueError: the payload names an MCP action type but its fields are wrong.
    """
    if not (isinstance(data, dict) and isinstance(env_cls, type) and issubclass(env_cls, MCPEnvironment)):
        return None
    cls = _ACTION_TYPES.get(data.get("type"))
    if cls is None:
        return None
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
    try:
        return _action_adapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        raise ValueError(f"{cls.__name__}: {e}") from None


_ADAPTERS: dict[type, pydantic.TypeAdapter] = {}


def _action_adapter(cls: type) -> pydantic.TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return _ADAPTERS[cls]


# --- the environment base -----------------------------------------------------


class MCPEnvironment(Environment[CallToolAction, Observation, State]):
    """An environment whose actions are MCP tool calls.

    Subclasses mark tool methods with :func:`tool` (or pass a ready FastMCP
    server to ``__init__``, as OpenEnv's environments do), and implement
    :meth:`reset` and :attr:`state`. Every step counts in ``state.step_count``.
    Override :meth:`after_tool_call` to give a call its reward and end the
    episode, and :meth:`step_other` to accept actions that are not tool calls.

    Args:
        mcp: a FastMCP server holding the tools; by default one is made from
            the :func:`tool` methods.

    Raises:
        ValueError: a tool is named ``reset``, ``step``, ``state`` or ``close``.
    """

    action_type = CallToolAction
    observation_type = CallToolObservation

    def __init__(self, mcp: "FastMCP | None" = None):
        from fastmcp import FastMCP

        if mcp is None:
            mcp = FastMCP(type(self).__name__)
            for name in dir(type(self)):
                if getattr(getattr(type(self), name), _TOOL_MARK, False):
                    mcp.tool(getattr(self, name))
        self.mcp = mcp
        # FastMCP is async; each instance runs it on its own loop, from the
        # worker thread the server calls the environment in.
        self._loop = asyncio.new_event_loop()
        # One tool call at a time: requests of one MCP session may arrive together
        # (over HTTP), and a loop runs in one thread at a time.
        self._calls = threading.Lock()
        reserved = sorted({t.name for t in self.list_tools()} & RESERVED_TOOL_NAMES)
        if reserved:
            raise ValueError(f"{type(self).__name__}: tools may not be named {reserved}; these names are the environment's own API")

    def _run(self, coro: Awaitable[Any]) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: a server worker thread, no loop running
            with self._calls:
                return self._loop.run_until_complete(coro)
        # Called from inside a running loop (the environment used in-process from a
        # notebook or an async test): the private loop runs on a thread of its own.
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(self._run, coro).result()

    # the tools

    def list_tools(self) -> "list[mcp_types.Tool]":
        """The tools as MCP ``Tool`` models (name, description, input and output schema)."""
        return [t.to_mcp_tool() for t in self._run(self.mcp.list_tools())]

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolObservation:
        """Run one tool; failures come back in ``error``, never as exceptions."""
        from fastmcp.exceptions import NotFoundError, ToolError
        from fastmcp.exceptions import ValidationError as ToolArgumentsError

        try:
            result = self._run(self.mcp.call_tool(name, arguments or {}))
        except NotFoundError:
            known = sorted(t.name for t in self.list_tools())
            return _tool_error(name, ToolErrorType.TOOL_NOT_FOUND, f"unknown tool {name!r}; tools: {known}")
        except ToolArgumentsError as e:
            return _tool_error(name, ToolErrorType.INVALID_ARGS, str(e))
        except ToolError as e:
            return _tool_error(name, ToolErrorType.EXECUTION_ERROR, str(e))
        # FastMCP wraps a plain return value as {"result": value}; data is the value itself.
        wrapped = bool((result.meta or {}).get("fastmcp", {}).get("wrap_result"))
        structured = result.structured_content
        return CallToolObservation(
            tool_name=name,
            result={
                "content": [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content],
                "structured_content": structured,
                "data": structured.get("result") if wrapped and structured else structured,
                "is_error": bool(result.is_error),
            },
        )

    # the environment API

    def step(self, action: Any) -> Observation:
        self.state.step_count += 1
        if isinstance(action, ListToolsAction):
            return ListToolsObservation(tools=[_tool_summary(t) for t in self.list_tools()])
        if isinstance(action, CallToolAction):
            return self.after_tool_call(action, self.call_tool(action.tool_name, action.arguments))
        return self.step_other(action)

    def after_tool_call(self, action: CallToolAction, observation: CallToolObservation) -> Observation:
        """The step's observation after a tool call; set ``reward`` and ``done`` here."""
        return observation

    def step_other(self, action: Any) -> Observation:
        """Actions other than tool calls; by default they are refused."""
        raise ValueError(f"{type(self).__name__} takes CallToolAction or ListToolsAction, got {type(action).__name__}")

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()


def _tool_error(name: str, kind: ToolErrorType, message: str) -> CallToolObservation:
    return CallToolObservation(tool_name=name, error={"error_type": kind.value, "message": message})


def _tool_summary(t: "mcp_types.Tool") -> dict[str, Any]:
    return {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}


# --- MCP JSON-RPC -------------------------------------------------------------


class MCPMessage(pydantic.BaseModel):
    """``{"type": "mcp", "data": <JSON-RPC request>}`` on ``/ws``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    type: Literal["mcp"] = "mcp"
    data: dict[str, Any]


_SESSION_METHODS = ("openenv/session/create", "openenv/session/close")
#: MCP's streamable-HTTP session header.
_SESSION_HEADER = "mcp-session-id"


def _rpc_result(request_id: Any, result: pydantic.BaseModel | dict[str, Any]) -> dict[str, Any]:
    import mcp_types

    if isinstance(result, pydantic.BaseModel):
        result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return mcp_types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result).model_dump(mode="json", by_alias=True)


def _rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    import mcp_types

    error = mcp_types.ErrorData(code=code, message=message)
    reply = mcp_types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error).model_dump(mode="json", by_alias=True, exclude_none=True)
    reply.setdefault("id", None)  # JSON-RPC: null when the request's id could not be read
    return reply


def _call_result(observation: CallToolObservation) -> "mcp_types.CallToolResult":
    import mcp_types

    if observation.error is not None:  # MCP reports failed calls as results with isError
        text = f"{observation.error['error_type']}: {observation.error['message']}"
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)], is_error=True)
    result = observation.result or {}
    return mcp_types.CallToolResult.model_validate(
        {"content": result.get("content", []), "structuredContent": result.get("structured_content"), "isError": result.get("is_error", False)}
    )


EnvCall = Callable[[Callable[..., Any]], Awaitable[Any]]


async def answer_jsonrpc(body: Any, run: EnvCall | None, env_cls: type) -> dict[str, Any] | None:
    """Answer one JSON-RPC request for ``tools/list`` or ``tools/call``.

    ``run(fn)`` calls ``fn(env)`` on the environment the request addresses
    (in a worker thread); None when the server's environment has no tools.
    Returns None for a notification (a request without an id needs no answer).
    """
    import mcp_types

    try:
        request = mcp_types.JSONRPCRequest.model_validate(body)
    except RecursionError:
        return _rpc_error(None, mcp_types.INVALID_REQUEST, "not a JSON-RPC 2.0 request: nested too deeply")
    except pydantic.ValidationError as e:
        request_id = body.get("id") if isinstance(body, dict) and isinstance(body.get("id"), (str, int)) else None
        if isinstance(body, dict) and "id" not in body and isinstance(body.get("method"), str):
            return None  # a notification (e.g. notifications/initialized): nothing to answer
        return _rpc_error(request_id, mcp_types.INVALID_REQUEST, f"not a JSON-RPC 2.0 request: {e.errors()[0]['msg']}")
    params = request.params or {}
    if request.method == "ping":
        return _rpc_result(request.id, {})
    if request.method == "initialize":
        return _rpc_result(request.id, _initialize_result(env_cls, params))
    if run is None:
        return _rpc_error(request.id, mcp_types.METHOD_NOT_FOUND, f"{env_cls.__name__} is not an MCP tool environment; it has no {request.method}")
    if request.method == "tools/list":
        tools = await run(lambda env: env.list_tools())
        return _rpc_result(request.id, mcp_types.ListToolsResult(tools=tools))
    if request.method == "tools/call":
        try:
            call = mcp_types.CallToolRequestParams.model_validate(params)
        except pydantic.ValidationError as e:
            return _rpc_error(request.id, mcp_types.INVALID_PARAMS, f"tools/call needs params {{name, arguments}}: {e.errors()[0]['msg']}")
        observation = await run(lambda env: env.call_tool(call.name, call.arguments))
        if observation.error is not None and observation.error["error_type"] == ToolErrorType.TOOL_NOT_FOUND.value:
            return _rpc_error(request.id, mcp_types.INVALID_PARAMS, observation.error["message"])
        reply = _rpc_result(request.id, _call_result(observation))
        if observation.result is not None:  # OpenEnv's MCP clients read the tool's return value here
            reply["result"]["data"] = observation.result["data"]
        return reply
    return _rpc_error(request.id, mcp_types.METHOD_NOT_FOUND, f"unknown method {request.method!r}; this server answers tools/list and tools/call")


def _initialize_result(env_cls: type, params: dict[str, Any]) -> dict[str, Any]:
    import mcp_types

    # Enough of MCP's handshake for a client that opens with it; the session
    # itself is the request's (stateless) or the connection's.
    version = params.get("protocolVersion") or mcp_types.LATEST_PROTOCOL_VERSION
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": env_cls.__name__, "version": "gym_openenv"},
    }


def _is_tool_env(host: "EnvHost") -> bool:
    return issubclass(host.env_cls, MCPEnvironment)


def _session_runner(session: "Session", host: "EnvHost") -> EnvCall:
    async def run(fn: Callable[..., Any]) -> Any:
        session.busy += 1
        try:
            return await host.run(fn, session.env, timeout=host.settings.step_timeout)
        finally:
            session.busy -= 1
            session.touch()

    return run


def _fresh_env_runner(host: "EnvHost") -> EnvCall:
    async def run(fn: Callable[..., Any]) -> Any:
        env = await host.run(lambda: host.env_cls(**host.env_kwargs))
        try:
            return await host.run(fn, env, timeout=host.settings.step_timeout)
        finally:
            await host.run(env.close)

    return run


async def _answer_http(body: Any, host: "EnvHost") -> dict[str, Any] | None:
    """POST /mcp: stateless, or inside a session made with ``openenv/session/create``."""
    import mcp_types

    method = body.get("method") if isinstance(body, dict) else None
    params = body.get("params") if isinstance(body, dict) and isinstance(body.get("params"), dict) else {}
    request_id = body.get("id") if isinstance(body, dict) else None
    if method in _SESSION_METHODS:
        return await _answer_session_method(method, params, request_id, host)
    if not _is_tool_env(host):
        return await answer_jsonrpc(body, None, host.env_cls)
    session_id = params.get("session_id")
    if session_id is None:
        return await answer_jsonrpc(body, _fresh_env_runner(host), host.env_cls)
    try:
        session = host.sessions.get(str(session_id))
    except KeyError as e:
        return _rpc_error(request_id, mcp_types.INVALID_PARAMS, str(e.args[0]))
    body = {**body, "params": {k: v for k, v in params.items() if k != "session_id"}}
    return await answer_jsonrpc(body, _session_runner(session, host), host.env_cls)


async def _answer_session_method(method: str, params: dict[str, Any], request_id: Any, host: "EnvHost") -> dict[str, Any]:
    import mcp_types

    from gym_openenv.server.sessions import CapacityError

    if method == "openenv/session/create":
        try:
            session = await host.sessions.open()
        except CapacityError as e:
            return _rpc_error(request_id, mcp_types.INTERNAL_ERROR, str(e))
        except Exception as e:  # the environment's constructor failed
            return _rpc_error(request_id, mcp_types.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
        return _rpc_result(request_id, {"session_id": session.id})
    session_id = params.get("session_id")
    if session_id is None:
        return _rpc_error(request_id, mcp_types.INVALID_PARAMS, "openenv/session/close needs params.session_id")
    try:
        host.sessions.get(str(session_id))
    except KeyError as e:
        return _rpc_error(request_id, mcp_types.INVALID_PARAMS, str(e.args[0]))
    await host.sessions.close(str(session_id))
    return _rpc_result(request_id, {"session_id": session_id, "closed": True})


def add_mcp_http_route(app: "FastAPI", host: "EnvHost") -> None:
    """``POST /mcp`` (and ``DELETE /mcp``) on every server; a server without tools
    answers with a JSON-RPC error.

    A client that opens with MCP's ``initialize`` gets a session of its own, named
    in the ``Mcp-Session-Id`` header as MCP's streamable-HTTP transport does;
    requests carrying the header reach that session's environment, and
    ``DELETE /mcp`` with it ends the session (the idle reaper ends forgotten ones).
    """
    from fastapi import Request, Response
    from fastapi.responses import JSONResponse

    @app.post("/mcp")
    async def mcp_jsonrpc(request: Request) -> Response:
        import mcp_types

        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, or nested too deeply
            return JSONResponse(_rpc_error(None, mcp_types.PARSE_ERROR, f"invalid JSON: {type(e).__name__}: {e}"))
        session_id = request.headers.get(_SESSION_HEADER)
        if isinstance(body, dict) and body.get("method") == "initialize" and session_id is None and _is_tool_env(host):
            created = await _answer_session_method("openenv/session/create", {}, body.get("id"), host)
            if "error" in created:
                return JSONResponse(created)
            reply = await answer_jsonrpc(body, None, host.env_cls)
            return JSONResponse(reply, headers={_SESSION_HEADER: created["result"]["session_id"]})
        if session_id is not None and isinstance(body, dict) and isinstance(body.get("params", {}), dict):
            body = {**body, "params": {**body.get("params", {}), "session_id": session_id}}
        reply = await _answer_http(body, host)
        return Response(status_code=202) if reply is None else JSONResponse(reply)

    @app.delete("/mcp")
    async def end_mcp_session(request: Request) -> Response:
        session_id = request.headers.get(_SESSION_HEADER)
        if session_id is None:
            return JSONResponse({"detail": f"DELETE /mcp needs the {_SESSION_HEADER} header"}, status_code=400)
        try:
            host.sessions.get(session_id)
        except KeyError as e:
            return JSONResponse({"detail": str(e.args[0])}, status_code=404)
        await host.sessions.close(session_id)
        return Response(status_code=204)


async def serve_mcp_websocket(ws: "WebSocket", host: "EnvHost") -> None:
    """``WS /mcp``: one session per connection, one JSON-RPC request per text frame."""
    import mcp_types
    from fastapi import WebSocketDisconnect

    from gym_openenv.server.sessions import CapacityError

    await ws.accept()
    try:
        session = await host.sessions.open()
    except CapacityError as e:
        await ws.send_text(json.dumps(_rpc_error(None, mcp_types.INTERNAL_ERROR, str(e))))
        await ws.close(code=1013)
        return
    except Exception as e:  # the environment's constructor failed: tell the client why
        await ws.send_text(json.dumps(_rpc_error(None, mcp_types.INTERNAL_ERROR, f"{type(e).__name__}: {e}")))
        await ws.close(code=1011)
        return
    run = _session_runner(session, host) if _is_tool_env(host) else None
    try:
        while True:
            text = await ws.receive_text()
            try:
                body = json.loads(text)
            except (ValueError, RecursionError) as e:
                reply = _rpc_error(None, mcp_types.PARSE_ERROR, f"invalid JSON: {type(e).__name__}: {e}")
            else:
                reply = await _answer_or_fail(body, run, host)
            if reply is not None:
                await ws.send_text(json.dumps(reply))
    except WebSocketDisconnect:
        pass
    finally:
        await host.sessions.close(session.id)


async def _answer_or_fail(body: Any, run: EnvCall | None, host: "EnvHost") -> dict[str, Any] | None:
    import mcp_types

    from gym_openenv.server.host import StepTimeout

    try:
        return await answer_jsonrpc(body, run, host.env_cls)
    except StepTimeout as e:
        request_id = body.get("id") if isinstance(body, dict) else None
        return _rpc_error(request_id, mcp_types.INTERNAL_ERROR, str(e))


async def on_mcp_message(message: MCPMessage, session: "Session", host: "EnvHost", send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """``{"type": "mcp"}`` on ``/ws``: JSON-RPC inside the connection's session."""
    run = _session_runner(session, host) if _is_tool_env(host) else None
    reply = await _answer_or_fail(message.data, run, host)
    await send({"type": "mcp", "data": reply if reply is not None else {}})
