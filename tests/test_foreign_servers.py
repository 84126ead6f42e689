"""Servers built by OpenEnv's own code (openenv-core), driven through
gym.make("openenv/remote-v0", url=...) and make_vec, with spaces from their /schema:

* the environment `openenv init` generates (its template, unmodified but for the
  session limit its comment tells users to raise);
* a tool-calling environment on OpenEnv's MCPEnvironment and create_app: OpenEnv
  routes CallToolAction to a FastMCP server; only the one tool is written here.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import httpx
import numpy as np
import pytest
from gymnasium import spaces

from gym_openenv.providers.remote import RemoteProvider

MCP_APP = '''
import uuid

from fastmcp import FastMCP
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.mcp_environment import MCPEnvironment
from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation
from openenv.core.env_server.types import State


class CounterToolEnvironment(MCPEnvironment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self):
        mcp = FastMCP("counter")
        self.count = 0

        @mcp.tool()
        def bump(by: int = 1) -> int:
            """Add `by` to the counter and return it."""
            self.count += by
            return self.count

        super().__init__(mcp)
        self._state = State(episode_id=str(uuid.uuid4()), step_count=0)

    def reset(self, seed=None, episode_id=None, **kwargs):
        self.count = 0
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        return CallToolObservation(tool_name="", result=None, done=False, reward=0.0)

    def _step_impl(self, action, timeout_s=None, **kwargs):
        raise ValueError(f"only tool calls: {type(action).__name__}")

    @property
    def state(self):
        return self._state


app = create_app(CounterToolEnvironment, CallToolAction, CallToolObservation, env_name="counter", max_concurrent_envs=8)
'''


def serve(app: str, cwd: Path) -> tuple[str, subprocess.Popen]:
    """Run an ASGI app with uvicorn, as OpenEnv's docs do; its URL once /health answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass  # not up yet
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited:\n{process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{app} did not answer /health")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def template_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("openenv_init")
    subprocess.run(["openenv", "init", "foreign_echo"], cwd=root, check=True, capture_output=True, timeout=120)
    app_py = root / "foreign_echo" / "server" / "app.py"
    # The template's own comment: "increase this number to allow more concurrent WebSocket sessions".
    app_py.write_text(app_py.read_text().replace("max_concurrent_envs=1", "max_concurrent_envs=8"))
    url, process = serve("server.app:app", root / "foreign_echo")
    yield url
    stop(process)


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("openenv_mcp")
    (root / "counter_app.py").write_text(MCP_APP)
    url, process = serve("counter_app:app", root)
    yield url
    stop(process)


def test_openenv_template_through_gym_make(template_server):
    env = gym.make("openenv/remote-v0", provider=RemoteProvider(template_server))
    try:
        assert isinstance(env.action_space, spaces.Text)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step("foreign")
        assert obs == "foreign" and info["message_length"] == 7
        assert reward == pytest.approx(0.7) and not terminated and not truncated
    finally:
        env.close()


def test_openenv_template_through_make_vec(template_server):
    envs = gym.make_vec("openenv/remote-v0", url=template_server, num_envs=3)
    try:
        assert not envs.unwrapped.batched  # plain OpenEnv sessions, one per env
        envs.reset(seed=0)
        obs, reward, *_ = envs.step(np.array(["x", "yy", "zzz"]))
        assert list(obs) == ["x", "yy", "zzz"]
        np.testing.assert_allclose(reward, [0.1, 0.2, 0.3])
    finally:
        envs.close()


def call(tool: str) -> dict:
    return {"type": "call_tool", "tool_name": tool}


def test_openenv_mcp_environment_through_gym_make(mcp_server):
    env = gym.make("openenv/remote-v0", url=mcp_server)
    try:
        assert isinstance(env.action_space, spaces.Dict) and set(env.action_space) == {"type", "tool_name"}
        env.reset(seed=0)
        for expected in (1, 2):
            obs, _, _, _, info = env.step(call("bump"))
            assert obs == "bump" and info["result"]["data"] == expected
        obs, _, _, _, info = env.step(call("no_such_tool"))
        assert info["error"]["error_type"] == "tool_not_found"
        env.reset()
        assert env.step(call("bump"))[4]["result"]["data"] == 1  # reset cleared the session's counter
    finally:
        env.close()


def test_openenv_mcp_environment_through_make_vec(mcp_server):
    envs = gym.make_vec("openenv/remote-v0", url=mcp_server, num_envs=2)
    try:
        envs.reset(seed=0)
        envs.step({"type": np.array(["call_tool"] * 2), "tool_name": np.array(["bump"] * 2)})
        obs, _, _, _, info = envs.step({"type": np.array(["call_tool"] * 2), "tool_name": np.array(["bump", "no_such_tool"])})
        assert list(obs) == ["bump", "no_such_tool"]
        assert info["result"][0]["data"] == 2  # sessions are separate environments
        assert info["error"][1]["error_type"] == "tool_not_found"
    finally:
        envs.close()
