"""MCP tool environments on both sides, against real server processes.

* Server side (gym_openenv.server.mcp): our calculator server driven by
  openenv-core's own MCPToolClient (step path and production /mcp path), raw
  JSON-RPC over POST /mcp, WS /mcp and {"type": "mcp"} on /ws, and
  openenv-core's ``validate --url`` checks.
* Gym side (gym_openenv.tools): tests/mcp_apps/toolbox_app.py, a tool
  environment written the way upstream writes them (openenv-core's
  MCPEnvironment and create_app, tools taking arguments of many shapes), through
  gym.make("openenv/remote-v0", url=...), check_env, sampled actions and make_vec.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import httpx
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from websockets.sync.client import connect

import gym_openenv  # noqa: F401  (registers the ids)
from gym_openenv.endpoint import Endpoint
from gym_openenv.env import OpenEnvEnv
from gym_openenv.models import State
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.server.mcp import CallToolAction, ListToolsAction, MCPEnvironment, tool
from gym_openenv.tools import ToolEnv, ToolVectorEnv

CALCULATOR = "gym_openenv.servers.calculator.server.environment:CalculatorEnvironment"
MCP_APPS = Path(__file__).resolve().parent / "mcp_apps"
TOOLBOX_TOOLS = ["echo", "add", "move", "total", "note", "ping"]


@pytest.fixture(scope="module")
def calculator():
    with LocalProcessProvider(CALCULATOR, server_args=["--max-sessions", "64"]) as provider:
        yield provider.base_url


@pytest.fixture(scope="module")
def toolbox():
    """tests/mcp_apps/toolbox_app.py under uvicorn, as upstream's docs run an environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "toolbox_app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=MCP_APPS,
        env={**os.environ, "PYTHONPATH": str(MCP_APPS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        Endpoint.parse(url).wait_healthy(180, stopped=lambda: None if process.poll() is None else f"exited with {process.returncode}")
        yield url
    finally:
        process.terminate()
        process.wait(30)


def rpc(url: str, method: str, params: dict | None = None, request_id: int = 1) -> dict:
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, **({"params": params} if params is not None else {})}
    return httpx.post(f"{url}/mcp", json=body, timeout=60).json()


# --- server side ---------------------------------------------------------------


def test_openenv_mcp_tool_client_steps_our_tools(calculator):
    from openenv.core.mcp_client import MCPToolClient

    async def session():
        async with MCPToolClient(base_url=calculator) as env:
            result = await env.reset(seed=1)
            tools = await env.list_tools()
            total = await env.call_tool("add", a=2, b=3.5)
            with pytest.raises(RuntimeError, match="tool_not_found"):
                await env.call_tool("no_such_tool")
            with pytest.raises(RuntimeError, match="invalid_args"):
                await env.call_tool("add", a="two", b=3)
            return result, tools, total

    result, tools, total = asyncio.run(session())
    assert result.observation.tool_name == ""  # a reset observation: no call yet
    assert sorted(t.name for t in tools) == ["add", "divide", "multiply", "submit", "subtract"]
    assert tools[0].input_schema["properties"]["a"] == {"type": "number", "minimum": -1e12, "maximum": 1e12}
    assert total == 5.5


def test_openenv_mcp_tool_client_production_mode(calculator):
    from openenv.core.mcp_client import MCPToolClient

    async def session():
        client = MCPToolClient(base_url=calculator)
        client.use_production_mode = True  # POST /mcp with an openenv/session/create session
        async with client:
            names = [t.name for t in await client.list_tools()]
            value = await client.call_tool("multiply", a=6, b=7)
            held = httpx.get(f"{calculator}/health").json()["active_sessions"]
        return names, value, held

    names, value, held = asyncio.run(session())
    assert "multiply" in names and value == 42.0 and held >= 1
    assert httpx.get(f"{calculator}/health").json()["active_sessions"] == 0  # closed with the client


def test_jsonrpc_over_post_mcp(calculator):
    listed = rpc(calculator, "tools/list")
    assert listed["jsonrpc"] == "2.0" and listed["id"] == 1
    assert {t["name"] for t in listed["result"]["tools"]} >= {"add", "submit"}
    assert all("inputSchema" in t for t in listed["result"]["tools"])  # MCP's own field names
    called = rpc(calculator, "tools/call", {"name": "subtract", "arguments": {"a": 10, "b": 4}}, request_id=2)
    assert called["result"]["content"] == [{"type": "text", "text": "6.0"}]
    assert called["result"]["structuredContent"] == {"result": 6.0} and called["result"]["isError"] is False
    failed = rpc(calculator, "tools/call", {"name": "divide", "arguments": {"a": 1, "b": 0}})
    assert failed["result"]["isError"] is True and "division by zero" in failed["result"]["content"][0]["text"]
    assert rpc(calculator, "tools/call", {"name": "nope", "arguments": {}})["error"]["code"] == -32602
    assert rpc(calculator, "resources/list")["error"]["code"] == -32601
    assert httpx.post(f"{calculator}/mcp", content=b"{not json").json()["error"]["code"] == -32700
    assert httpx.post(f"{calculator}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202


def test_mcp_session_header(calculator):
    """MCP's streamable HTTP: initialize names a session in Mcp-Session-Id; requests with it reach that session."""
    before = httpx.get(f"{calculator}/health").json()["active_sessions"]
    opened = httpx.post(f"{calculator}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}})
    assert opened.json()["result"]["capabilities"]["tools"] is not None
    header = {"mcp-session-id": opened.headers["mcp-session-id"]}
    assert httpx.get(f"{calculator}/health").json()["active_sessions"] == before + 1
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 1}}}
    assert httpx.post(f"{calculator}/mcp", json=call, headers=header).json()["result"]["data"] == 2.0
    assert httpx.delete(f"{calculator}/mcp", headers=header).status_code == 204
    assert httpx.get(f"{calculator}/health").json()["active_sessions"] == before
    assert httpx.post(f"{calculator}/mcp", json=call, headers=header).json()["error"]["code"] == -32602  # that session is gone
    assert httpx.delete(f"{calculator}/mcp", headers=header).status_code == 404


def test_concurrent_requests_of_one_mcp_session(calculator):
    """An MCP client may send a session's requests together; they all get their answer."""
    from concurrent.futures import ThreadPoolExecutor

    opened = httpx.post(f"{calculator}/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
    header = {"mcp-session-id": opened.headers["mcp-session-id"]}

    def add(i: int) -> float:
        call = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "add", "arguments": {"a": i, "b": 1}}}
        return httpx.post(f"{calculator}/mcp", json=call, headers=header, timeout=60).json()["result"]["data"]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(add, range(24))) == [i + 1.0 for i in range(24)]
    assert httpx.delete(f"{calculator}/mcp", headers=header).status_code == 204


def test_a_standard_mcp_client_uses_our_tools(calculator):
    """fastmcp's own Client (MCP's streamable-HTTP transport: initialize, then tools/*) at POST /mcp."""
    from fastmcp import Client

    async def session():
        async with Client(f"{calculator}/mcp") as client:
            names = [t.name for t in await client.list_tools()]
            held = httpx.get(f"{calculator}/health").json()["active_sessions"]
            return names, await client.call_tool("add", {"a": 2, "b": 40}), held

    before = httpx.get(f"{calculator}/health").json()["active_sessions"]
    names, result, held = asyncio.run(session())
    assert names == ["add", "divide", "multiply", "submit", "subtract"] and result.data == 42.0
    assert held == before + 1  # a session of its own (Mcp-Session-Id) ...
    assert httpx.get(f"{calculator}/health").json()["active_sessions"] == before  # ... ended with the client


def test_mcp_inside_the_openenv_session(calculator):
    """{"type": "mcp"} on /ws reaches the session's own environment: a task posed
    by reset is answered through JSON-RPC on the same connection."""
    ws_url = calculator.replace("http", "ws") + "/ws"
    with connect(ws_url) as ws:
        ws.send(json.dumps({"type": "reset", "data": {"seed": 3}}))
        question = json.loads(ws.recv())["data"]["observation"]["question"]
        answer = eval(question.removeprefix("What is ").split("?")[0], {"__builtins__": {}})  # digits and + - * only
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "submit", "arguments": {"answer": answer}}}
        ws.send(json.dumps({"type": "mcp", "data": call}))
        reply = json.loads(ws.recv())
        assert reply["type"] == "mcp" and reply["data"]["id"] == 9
        assert reply["data"]["result"]["content"][0]["text"] == "correct"
        ws.send(json.dumps({"type": "state"}))
        assert json.loads(ws.recv())["data"]["submitted"] is True
        ws.send(json.dumps({"type": "step", "data": {"type": "list_tools"}}))
        assert len(json.loads(ws.recv())["data"]["observation"]["tools"]) == 5


def test_websocket_mcp_route_keeps_one_session(calculator):
    with connect(calculator.replace("http", "ws") + "/mcp") as ws:
        for request_id in (1, 2):
            ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "submit", "arguments": {"answer": 0}}}))
            assert json.loads(ws.recv())["id"] == request_id
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        assert len(json.loads(ws.recv())["result"]["tools"]) == 5
        assert httpx.get(f"{calculator}/health").json()["active_sessions"] >= 1


@pytest.mark.parametrize("body", [b"[" * 100_000, b"\xff\xfe", b"[1, 2]", b"null", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}'])
def test_malformed_mcp_requests_get_jsonrpc_errors(body):
    from fastapi.testclient import TestClient

    from gym_openenv.server import create_app
    from gym_openenv.servers.calculator.server.environment import CalculatorEnvironment

    with TestClient(create_app(CalculatorEnvironment)) as client:
        reply = client.post("/mcp", content=body)
        assert reply.status_code == 200 and reply.json()["error"]["code"] in (-32700, -32600)
        with client.websocket_connect("/mcp") as ws:
            ws.send_text(body.decode("utf-8", errors="replace"))
            assert json.loads(ws.receive_text())["error"]["code"] in (-32700, -32600)


def test_openenv_validate_accepts_our_servers(calculator, echo_server):
    from openenv.cli._validation import validate_running_environment

    for url in (calculator, echo_server):  # every server answers /mcp; one without tools with a JSON-RPC error
        report = validate_running_environment(url)
        assert next(c for c in report["criteria"] if c["id"] == "mcp_endpoint")["passed"]
        assert report["summary"]["failed_criteria"] == [], report["criteria"]
    assert rpc(echo_server, "tools/list")["error"]["code"] == -32601


class Counter(MCPEnvironment):
    def __init__(self, mcp=None):
        super().__init__(mcp)
        self._state, self.total = State(), 0

    @tool
    def bump(self, by: int = 1) -> int:
        """Add to the counter."""
        self.total += by
        return self.total

    @tool
    def fail(self) -> str:
        """Always raises."""
        raise RuntimeError("broken on purpose")

    def reset(self, seed=None, episode_id=None, **kwargs):
        self._state, self.total = State(episode_id=episode_id), 0
        return self.step(ListToolsAction())

    @property
    def state(self):
        return self._state


def test_mcp_environment_base_in_process():
    env = Counter()
    env.reset()
    assert env.step(CallToolAction(tool_name="bump", arguments={"by": 4})).result["data"] == 4
    assert env.step(CallToolAction(tool_name="bump", arguments={"by": "x"})).error["error_type"] == "invalid_args"
    assert env.step(CallToolAction(tool_name="fail")).error == {"error_type": "execution_error", "message": "Error calling tool 'fail': broken on purpose"}
    assert env.step(CallToolAction(tool_name="gone")).error["error_type"] == "tool_not_found"
    assert env.state.step_count == 5  # the reset's list_tools and four calls
    with pytest.raises(ValueError, match="takes CallToolAction"):
        env.step("not a tool call")

    async def from_a_running_loop():  # e.g. a notebook cell
        return env.step(CallToolAction(tool_name="bump")).result["data"]

    assert asyncio.run(from_a_running_loop()) == 5
    env.close()


def test_reserved_tool_names_are_refused():
    from fastmcp import FastMCP

    server = FastMCP("bad")

    @server.tool
    def reset() -> str:
        return "shadowed"

    with pytest.raises(ValueError, match=r"may not be named \['reset'\]"):
        Counter(server)  # OpenEnv's way: a FastMCP server made by the author


# --- gym side -----------------------------------------------------------------


def test_upstream_style_tool_env_through_remote_v0(toolbox):
    env = gym.make("openenv/remote-v0", url=toolbox)
    try:
        assert isinstance(env.unwrapped, ToolEnv)
        space = env.action_space
        assert space["tool"] == spaces.Discrete(len(TOOLBOX_TOOLS))
        arguments = space["arguments"].spaces
        assert set(arguments) == set(TOOLBOX_TOOLS) - {"ping"}  # ping takes none
        assert set(arguments["move"].spaces) == {"direction", "steps"}
        assert arguments["move"]["direction"] == spaces.Discrete(2) and arguments["move"]["steps"] == spaces.Discrete(5, start=1)
        assert set(arguments["note"].spaces) == {"title"} and set(arguments["total"].spaces) == {"values"}  # required only
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and obs == ""  # the server's reset observation has no fields
        assert [t["name"] for t in info["tools"]] == TOOLBOX_TOOLS
        env.action_space.seed(0)
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert info["error"] is None, info  # every sampled call passed the tool's own validation
            assert env.observation_space.contains(obs)
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_hand_written_tool_calls(toolbox):
    env = gym.make("openenv/remote-v0", url=toolbox)
    try:
        env.reset()
        obs, reward, *_ = env.step({"tool": "move", "arguments": {"move": {"direction": 0, "steps": 3}}})
        assert obs == "3" and reward == 1.0  # the server's reward reaches gymnasium
        obs, _, _, _, info = env.step({"tool": TOOLBOX_TOOLS.index("total"), "arguments": {"total": {"values": np.array([1.5, 2.5])}}})
        assert obs == "4.0" and info["result"]["data"] == 4.0
        assert env.step({"tool": "ping"})[0] == "pong"
        with pytest.raises(ValueError, match="unknown tool"):
            env.step({"tool": "launch"})
        with pytest.raises(ValueError, match="takes arguments"):
            env.step({"tool": "echo"})
        with pytest.raises(ValueError, match="not in"):
            env.step({"tool": "move", "arguments": {"move": {"direction": 0, "steps": 9}}})
    finally:
        env.close()


def test_upstream_style_tool_env_make_vec(toolbox):
    envs = gym.make_vec("openenv/remote-v0", num_envs=4, url=toolbox)
    try:
        assert isinstance(envs, ToolVectorEnv)
        obs, info = envs.reset(seed=0)
        assert list(obs) == [""] * 4 and all(len(t) == len(TOOLBOX_TOOLS) for t in info["tools"])
        envs.action_space.seed(1)
        for _ in range(5):
            obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert len(obs) == 4 and rewards.shape == (4,)  # Text observations batch to a tuple
            assert all(e is None for e in info["error"])
        up = {"tool": np.full(4, TOOLBOX_TOOLS.index("move")), "arguments": envs.action_space.sample()["arguments"]}
        up["arguments"]["move"] = {"direction": np.zeros(4, dtype=np.int64), "steps": np.array([1, 2, 3, 4])}
        envs.reset(seed=0)
        obs, rewards, *_ = envs.step(up)
        assert list(obs) == ["1", "2", "3", "4"] and list(rewards) == [0.0, 0.0, 1.0, 0.0]  # one session each
    finally:
        envs.close()


def test_remote_provider_finds_tools_too(toolbox):
    from gym_openenv.providers.remote import RemoteProvider

    env = gym.make("openenv/remote-v0", provider=RemoteProvider(toolbox))
    try:
        assert isinstance(env.unwrapped, ToolEnv) and env.unwrapped.base_url == toolbox
    finally:
        env.close()


def test_remote_v0_on_a_server_without_tools_is_unchanged(echo_server):
    env = gym.make("openenv/remote-v0", url=echo_server)
    try:
        assert type(env.unwrapped) is OpenEnvEnv
    finally:
        env.close()


def test_tools_false_keeps_the_plain_schema_mapping(toolbox):
    env = gym.make("openenv/remote-v0", url=toolbox, tools=False)
    try:
        assert type(env.unwrapped) is OpenEnvEnv
    finally:
        env.close()
    with pytest.raises(ValueError, match="tools=False"):
        gym.make("openenv/remote-v0", url=toolbox, action_space=spaces.Discrete(2))


# --- TRL ----------------------------------------------------------------------


def answer_of(question: str) -> float:
    expression = question.removeprefix("What is ").split("?")[0]
    assert set(expression) <= set("0123456789+-*() ")  # the calculator's tasks: safe to evaluate
    return float(eval(expression, {"__builtins__": {}}))


def completions_for(prompts: list[str]) -> list:
    """Right, wrong, absent and OpenAI-style (arguments as a JSON string, in a message) tool calls."""
    right, wrong, _, right_again = (answer_of(p) for p in prompts)
    return [
        f'<tool_call>{{"name": "submit", "arguments": {{"answer": {right}}}}}</tool_call>',
        f'First {{"name": "add", "arguments": {{"a": 1, "b": 2}}}} then {{"name": "submit", "arguments": {{"answer": {wrong + 1}}}}}',
        "I cannot use tools.",
        [{"role": "assistant", "content": json.dumps({"tool": "submit", "arguments": json.dumps({"answer": right_again})})}],
    ]


def test_trl_reward_function_scores_tool_calls():
    from gym_openenv.integrations.trl import EnvRewardFunction, parse_tool_calls, prompt_dataset

    assert parse_tool_calls('x {"name": "a", "arguments": {}} {"no": 1} {broken <tool_call>{"tool": "b", "arguments": "{\\"k\\": 2}"}</tool_call>') == [
        ("a", {}),
        ("b", {"k": 2}),
    ]
    env = gym.make("openenv/calculator-v0")
    envs = gym.make_vec("openenv/calculator-v0", num_envs=2)
    try:
        rows = prompt_dataset(env, range(4))
        prompts, seeds = [r["prompt"] for r in rows], [r["seed"] for r in rows]
        assert all(p.startswith("What is") for p in prompts) and seeds == [0, 1, 2, 3]
        assert prompt_dataset(envs, range(4)) == rows
        completions = completions_for(prompts)
        assert EnvRewardFunction(env)(prompts, completions, seed=seeds) == [1.0, 0.0, 0.0, 1.0]
        assert EnvRewardFunction(envs)(prompts, completions, seed=seeds) == [1.0, 0.0, 0.0, 1.0]
        with pytest.raises(ValueError, match="seed 0"):
            EnvRewardFunction(env)(prompts[1:2], completions[:1], seed=[0])  # the prompt of another seed
    finally:
        env.close()
        envs.close()


def test_tool_schemas_are_recognised_in_every_upstream_shape():
    from openenv.core.env_server.mcp_types import CallToolAction as UpstreamCallTool
    from openenv.core.env_server.mcp_types import ListToolsAction as UpstreamListTools
    from pydantic import TypeAdapter

    from gym_openenv.tools import is_tool_schema

    assert is_tool_schema(UpstreamCallTool.model_json_schema())  # echo_env, finqa_env
    union = TypeAdapter(UpstreamListTools | UpstreamCallTool).json_schema()  # agent_world_model_env's action
    assert "anyOf" in union and is_tool_schema(union)
    assert not is_tool_schema({"properties": {"message": {"type": "string"}}})
