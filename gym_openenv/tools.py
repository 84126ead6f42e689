"""MCP tool environments as gymnasium environments.

A server whose actions are MCP tool calls (OpenEnv's ``CallToolAction``:
upstream's echo_env, finqa_env, our ``openenv/calculator-v0``) becomes a
:class:`ToolEnv`. ``gym.make("openenv/remote-v0", url=...)`` picks it by
itself: the action schema has ``tool_name`` and ``arguments`` and ``POST /mcp``
lists the tools. Its spaces:

* action: ``Dict(tool=Discrete(n_tools), arguments=Dict({tool: <its arguments>}))``.
  Each tool's arguments are the space of its input schema
  (:func:`gym_openenv.spaces.schema_space`), so a sampled action is a valid
  call; only the chosen tool's entry is sent (and needed in a hand-made action);
  ``tool`` may also be given as the tool's name;
* observation: ``Text``, the text of the last tool result (``"<error_type>: <message>"``
  for a call that failed), or on reset the first observation's text (a task's question);
* ``info``: ``tools`` (name, description, input schema of each, in action order)
  on reset; after a call ``tool_name``, ``result`` (MCP content, structured
  content and the returned ``data``) and ``error``; the observation's other fields.

``gym.make_vec`` gives a :class:`~gymnasium.vector.SyncVectorEnv` of tool
environments sharing one server (one session each).

Example:
    >>> import gymnasium as gym, gym_openenv
    >>> env = gym.make("openenv/calculator-v0")
    >>> question, info = env.reset(seed=0)
    >>> [t["name"] for t in info["tools"]]
    ['add', 'divide', 'multiply', 'submit', 'subtract']
    >>> env.step({"tool": "add", "arguments": {"add": {"a": 2.0, "b": 3.0}}})[0]
    '5.0'
    >>> env.close()
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import httpx
import numpy as np
from gymnasium import spaces

from gym_openenv.client import DEFAULT_TIMEOUT, AsyncSession, EnvClient, LoopThread, StepResult, fetch_json
from gym_openenv.endpoint import Endpoint
from gym_openenv.env import OpenEnvEnv, end_session, resolve_server
from gym_openenv.errors import OpenEnvError
from gym_openenv.providers import Provider
from gym_openenv.server.mcp import CallToolAction, CallToolObservation, ListToolsObservation
from gym_openenv.spaces import SchemaSpace, contains, schema_space, text

__all__ = [
    "ToolClient",
    "ToolEnv",
    "ToolSpec",
    "ToolVectorEnv",
    "is_tool_schema",
    "list_tools",
    "make_env",
    "make_vec_env",
    "observation_text",
]

#: The fields of OpenEnv's CallToolAction that make a server a tool environment.
TOOL_ACTION_FIELDS = frozenset({"tool_name", "arguments"})
#: Observation fields a tool call fills (shown as the observation's text, not repeated in info).
_TOOL_RESULT_FIELDS = ("tool_name", "result", "error")


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what ``tools/list`` says about it, and its arguments as a space."""

    name: str
    description: str
    input_schema: dict[str, Any]
    arguments: SchemaSpace

    @classmethod
    def from_mcp(cls, tool: Mapping[str, Any]) -> ToolSpec:
        schema = dict(tool.get("inputSchema") or tool.get("input_schema") or {"type": "object"})
        return cls(str(tool["name"]), str(tool.get("description") or ""), schema, schema_space(schema, role="action"))

    @property
    def takes_arguments(self) -> bool:
        """Whether the input schema names any parameter (``{"properties": {}}`` is a tool without arguments)."""
        return bool(self.input_schema.get("properties"))

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


def is_tool_schema(action_schema: Mapping[str, Any]) -> bool:
    """Whether an action schema (from ``/schema``) is OpenEnv's ``CallToolAction`` or a union holding it."""
    variants = [action_schema, *action_schema.get("anyOf", ()), *action_schema.get("oneOf", ())]
    defs = action_schema.get("$defs", {})
    for variant in variants:
        ref = variant.get("$ref", "")
        if ref.startswith("#/$defs/"):
            variant = defs.get(ref.removeprefix("#/$defs/"), {})
        if TOOL_ACTION_FIELDS <= set(variant.get("properties", {})):
            return True
    return False


async def list_tools(base_url: str, token: str | None = None, timeout: float = 30.0) -> list[ToolSpec]:
    """The server's tools, from MCP ``tools/list`` at ``POST /mcp``.

    Raises:
        OpenEnvError: the server answers with a JSON-RPC error or no tools.
    """
    import mcp_types

    endpoint = Endpoint.parse(base_url, token)
    request = mcp_types.JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/list")
    async with endpoint.async_http_client(timeout) as http:
        response = await http.post(endpoint.http_url("/mcp"), json=request.model_dump(mode="json", by_alias=True, exclude_none=True))
    if response.status_code != 200:
        raise OpenEnvError(f"POST {base_url}/mcp: HTTP {response.status_code}: {response.text[:300]}")
    reply = response.json()
    if "error" in reply or not reply.get("result", {}).get("tools"):
        raise OpenEnvError(f"{base_url} lists no MCP tools: {str(reply.get('error') or reply)[:300]}")
    return [ToolSpec.from_mcp(t) for t in reply["result"]["tools"]]


def observation_text(fields: Mapping[str, Any]) -> str:
    """What an observation says, as text: a tool call's result or error, else the
    observation's one non-empty string field, else its fields as JSON."""
    error = fields.get("error")
    if error:
        return f"{error.get('error_type', 'error')}: {error.get('message', '')}" if isinstance(error, Mapping) else str(error)
    result = fields.get("result")
    if fields.get("tool_name") and result is not None:
        return _result_text(result)
    strings = [v for k, v in fields.items() if isinstance(v, str) and v and k not in _TOOL_RESULT_FIELDS]
    if len(strings) == 1:
        return strings[0]
    rest = {k: v for k, v in fields.items() if k not in _TOOL_RESULT_FIELDS and v not in (None, "", [], {})}
    return json.dumps(rest, sort_keys=True, default=str) if rest else ""


def _result_text(result: Any) -> str:
    if isinstance(result, Mapping):
        content = result.get("content")
        if isinstance(content, list):
            texts = [block.get("text", "") for block in content if isinstance(block, Mapping) and block.get("type") == "text"]
            if texts:
                return "\n".join(texts)
        if "data" in result and result["data"] is not None:
            data = result["data"]
            return data if isinstance(data, str) else json.dumps(data, sort_keys=True, default=str)
    return result if isinstance(result, str) else json.dumps(result, sort_keys=True, default=str)


class ToolEnv(gym.Env):
    """One session on an MCP tool environment server (see the module docstring).

    Args:
        environment: the Environment class, ``"module:Class"`` (set by the registry).
        url: connect to this running server instead of starting one.
        provider: where to start the server (as for :class:`~gym_openenv.env.OpenEnvEnv`).
        provider_options: arguments for the provider.
        timeout: seconds to wait for any reply.
        token: bearer token (default ``$OPENENV_TOKEN``).
        max_text_length: observation text beyond this many characters is cut (the full result is in ``info``).
        **env_kwargs: arguments for the environment.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        environment: str | None = None,
        *,
        url: str | None = None,
        provider: str | Provider | None = None,
        provider_options: dict[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        max_text_length: int = 8192,
        **env_kwargs: Any,
    ):
        self.timeout = timeout
        self._loop = LoopThread.shared()
        self._provider: Provider | None = None
        self._session: AsyncSession | None = None
        self.base_url, self._provider = resolve_server(environment, env_kwargs, url, provider, provider_options, token)
        try:
            token = token or getattr(self._provider, "token", None) or os.environ.get("OPENENV_TOKEN")
            self.tools = self._loop.run(list_tools(self.base_url, token, timeout), timeout)
            self.action_space = tool_action_space(self.tools)
            self.observation_space = text(max_text_length)
            self._session = AsyncSession(self.base_url, timeout=timeout, token=token)
            self._loop.run(self._session.connect(), timeout)
        except BaseException:
            self.close()
            raise

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        kwargs = dict(options or {})
        if seed is not None:
            kwargs["seed"] = int(seed)
        payload = self._loop.run(self._session.reset(**kwargs))
        obs, _, _, _, info = self._step_tuple(payload)
        info["tools"] = [t.summary() for t in self.tools]
        return obs, info

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        payload = self._loop.run(self._session.step(self.tool_call(action)))
        return self._step_tuple(payload)

    def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step with a call written by hand or by a language model, checked by the
        server only: a wrong name or arguments come back in ``info["error"]``."""
        payload = self._loop.run(self._session.step({"type": "call_tool", "tool_name": str(name), "arguments": dict(arguments or {})}))
        return self._step_tuple(payload)

    def tool_call(self, action: Any) -> dict[str, Any]:
        """An action of :attr:`action_space` -> OpenEnv's ``CallToolAction`` payload.

        Raises:
            ValueError: unknown tool, or arguments outside the tool's space.
        """
        if not isinstance(action, Mapping) or "tool" not in action:
            raise ValueError(f"a tool action is a dict {{'tool': index or name, 'arguments': {{tool: {{...}}}}}}, got {action!r}")
        tool = self._tool(action["tool"])
        arguments: dict[str, Any] = {}
        if tool.takes_arguments:
            given = (action.get("arguments") or {}).get(tool.name)
            if given is None:
                raise ValueError(f"tool {tool.name!r} takes arguments: pass action['arguments'][{tool.name!r}]")
            if not _contains(tool.arguments.space, given):
                raise ValueError(f"arguments of {tool.name!r}: {given!r} are not in {tool.arguments.space}")
            arguments = tool.arguments.encode(given)
        return {"type": "call_tool", "tool_name": tool.name, "arguments": arguments}

    def _tool(self, key: Any) -> ToolSpec:
        if isinstance(key, str):
            for t in self.tools:
                if t.name == key:
                    return t
            raise ValueError(f"unknown tool {key!r}; tools: {[t.name for t in self.tools]}")
        index = int(key)
        if not (0 <= index < len(self.tools) and index == key):
            raise ValueError(f"tool index {key!r} is not in Discrete({len(self.tools)})")
        return self.tools[index]

    def _step_tuple(self, payload: Mapping[str, Any]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        fields = dict(payload.get("observation") or {})
        text_ = observation_text(fields)
        obs = _fit_text(text_, self.observation_space)
        info = dict(fields)
        info.update(payload.get("metadata") or {})
        if obs != text_:
            info["text"] = text_  # the whole text, where the observation had to cut or replace characters
        truncated = bool(payload.get("truncated", False))
        terminated = bool(payload.get("done", False)) and not truncated
        reward = payload.get("reward")
        return obs, 0.0 if reward is None else float(reward), terminated, truncated, info

    def close(self) -> None:
        session, self._session = self._session, None
        provider, self._provider = self._provider, None
        end_session(self._loop, session, provider)
        super().close()


def tool_action_space(tools: list[ToolSpec]) -> spaces.Dict:
    """``Dict(tool=Discrete(n), arguments=Dict({tool: its arguments' space}))`` (no ``arguments`` if no tool takes any)."""
    if not tools:
        raise OpenEnvError("a tool environment needs at least one tool")
    action = {"tool": spaces.Discrete(len(tools))}
    arguments = {t.name: t.arguments.space for t in tools if t.takes_arguments}
    if arguments:
        action["arguments"] = spaces.Dict(arguments)
    return spaces.Dict(action)


def _contains(space: spaces.Space, value: Any) -> bool:
    """``space.contains``, taking plain numbers for ``Box`` entries (a hand-written call's arguments)."""
    if isinstance(space, spaces.Dict):
        return isinstance(value, Mapping) and set(value) == set(space.spaces) and all(_contains(s, value[k]) for k, s in space.spaces.items())
    return contains(space, value)


def _fit_text(value: str, space: spaces.Text) -> str:
    """``value`` inside ``space``: characters outside its charset become ``?``, the rest is cut to length."""
    if not space.character_set.issuperset(value):
        value = "".join(c if c in space.character_set else "?" for c in value)
    return value[: space.max_length]


# --- gym ids ------------------------------------------------------------------


def _running_server(url: str | None, kwargs: dict[str, Any]) -> str | None:
    """The URL of the running server a gym id is made for (``url=`` or a remote provider), else None."""
    from gym_openenv.providers.remote import RemoteProvider

    provider = kwargs.get("provider")
    return url if url is not None else provider.url if isinstance(provider, RemoteProvider) else None


def _asks_for_tools(url: str | None, kwargs: dict[str, Any]) -> bool:
    """Whether a running server's actions are tool calls (a server still to be started: no)."""
    running = _running_server(url, kwargs)
    if running is None:
        return False
    token = kwargs.get("token") or getattr(kwargs.get("provider"), "token", None) or os.environ.get("OPENENV_TOKEN")
    return _is_tool_server(running, token, kwargs.get("timeout", DEFAULT_TIMEOUT))


def _is_tool_server(url: str, token: str | None, timeout: float) -> bool:
    """Whether the server's actions are tool calls and ``POST /mcp`` lists its tools
    (an OpenEnv server older than its /mcp route keeps the plain mapping)."""
    loop = LoopThread.shared()
    schema = loop.run(fetch_json(url, "/schema", token), timeout)
    if not is_tool_schema(schema.get("action") or {}):
        return False
    try:
        loop.run(list_tools(url, token, timeout), timeout)
    except (OpenEnvError, httpx.HTTPError, ValueError):
        return False
    return True


def make_env(environment: str | None = None, *, url: str | None = None, tools: bool | None = None, **kwargs: Any) -> gym.Env:
    """``gym.make`` entry point: a :class:`ToolEnv` for a tool environment, else an
    :class:`~gym_openenv.env.OpenEnvEnv`.

    ``tools=True``/``False`` decides; ``None`` (default) asks the running server
    (``url=``, or a :class:`~gym_openenv.providers.remote.RemoteProvider`) whether
    its actions are tool calls. ``tools=False`` keeps the
    plain mapping of the action schema (``tool_name`` as text).
    """
    if tools is None:
        tools = _asks_for_tools(url, kwargs)
    if not tools:
        return OpenEnvEnv(environment, url=url, **kwargs)
    _refuse_space_overrides(kwargs)
    kwargs.pop("render_mode", None)  # tool results are text: nothing to render
    kwargs.pop("reconnect", None)
    return ToolEnv(environment, url=url, **kwargs)


def _refuse_space_overrides(kwargs: dict[str, Any]) -> None:
    given = sorted({"action_space", "observation_space", "hints"} & set(kwargs))
    if given:
        raise ValueError(f"{', '.join(given)}: a tool environment's spaces come from its tools; pass tools=False for the plain schema mapping")


def make_vec_env(environment: str | None = None, num_envs: int = 1, *, url: str | None = None, tools: bool | None = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """``gym.make_vec`` entry point: :class:`ToolVectorEnv` for a tool environment, else
    :class:`~gym_openenv.vector.OpenEnvVectorEnv` (``tools`` as in :func:`make_env`)."""
    if tools is None:
        tools = _asks_for_tools(url, kwargs)
    if not tools:
        from gym_openenv.vector import OpenEnvVectorEnv

        return OpenEnvVectorEnv(environment, num_envs, url=url, **kwargs)
    return ToolVectorEnv(environment, num_envs, url=url, **kwargs)


class ToolVectorEnv(gym.vector.SyncVectorEnv):
    """``num_envs`` :class:`ToolEnv` sessions on one server, stepped in turn.

    Tool calls are few and slow next to a training step, so the sessions share
    one server and gymnasium's own synchronous vector env (autoreset) rather
    than the batched binary protocol. Every ``info`` value is an object array
    (tool results change type from call to call).

    Args:
        environment, url, provider, provider_options, token: as for :class:`ToolEnv`;
            the server is started once.
        autoreset_mode: gymnasium's ``AutoresetMode`` (default ``NEXT_STEP``).
        **kwargs: the rest of :class:`ToolEnv`'s arguments and the environment's.
    """

    def __init__(
        self,
        environment: str | None = None,
        num_envs: int = 1,
        *,
        url: str | None = None,
        provider: str | Provider | None = None,
        provider_options: dict[str, Any] | None = None,
        token: str | None = None,
        autoreset_mode: Any = gym.vector.AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        env_option_names = ("timeout", "max_text_length")
        options = {k: kwargs.pop(k) for k in env_option_names if k in kwargs}
        _refuse_space_overrides(kwargs)
        # OpenEnvVectorEnv's transport options mean nothing here: one server holds every
        # session, and tool sessions speak OpenEnv's JSON protocol.
        for name in ("num_servers", "protocol", "shared_memory", "on_server_failure"):
            kwargs.pop(name, None)
        max_episode_steps = kwargs.pop("max_episode_steps", None)
        self._server_url, self._server = resolve_server(environment, kwargs, url, provider, provider_options, token)
        token = token or getattr(self._server, "token", None)

        def make() -> gym.Env:
            env = ToolEnv(url=self._server_url, token=token, **options)
            return env if max_episode_steps is None else gym.wrappers.TimeLimit(env, max_episode_steps)

        try:
            super().__init__([make] * num_envs, autoreset_mode=autoreset_mode)
        except BaseException:
            self._server.stop()
            raise

    def _add_info(self, vector_infos: dict[str, Any], env_info: dict[str, Any], env_num: int) -> dict[str, Any]:
        # Tool results are nested and change type from call to call (a number,
        # then a string): every info value is kept as it is, in an object array.
        for key, value in env_info.items():
            if key not in vector_infos:
                vector_infos[key] = np.full(self.num_envs, None, dtype=object)
                vector_infos[f"_{key}"] = np.zeros(self.num_envs, dtype=bool)
            vector_infos[key][env_num] = value
            vector_infos[f"_{key}"][env_num] = True
        return vector_infos

    def close_extras(self, **kwargs: Any) -> None:
        try:
            super().close_extras(**kwargs)
        finally:
            server, self._server = self._server, None
            if server is not None:
                server.stop()


class ToolClient(EnvClient):
    """A typed client for an MCP tool environment, in OpenEnv's style: steps take
    :class:`~gym_openenv.server.mcp.CallToolAction` or ``ListToolsAction``; a
    ``ListToolsAction`` step comes back as a ``ListToolsObservation``. Subclasses
    name their own observation model (``gym_openenv/servers/calculator/client.py``).
    """

    action_type = CallToolAction
    observation_type = CallToolObservation

    async def _observation(self, payload: dict[str, Any]) -> StepResult:
        fields = payload.get("observation") or {}
        if "tools" not in fields:
            return await super()._observation(payload)
        flags = {k: payload[k] for k in ("reward", "done", "truncated", "metadata") if k in payload}
        return StepResult(ListToolsObservation(**fields, **flags), payload.get("reward"), bool(payload.get("done")), bool(payload.get("truncated")))
