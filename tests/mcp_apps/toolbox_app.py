"""A tool environment written the way upstream OpenEnv writes them (its echo_env,
finqa_env): openenv-core's MCPEnvironment holding a FastMCP server whose tools
take arguments of many JSON-schema shapes, served by openenv-core's create_app
with CallToolAction/CallToolObservation. Run: ``uvicorn toolbox_app:app``."""

import uuid
from typing import Annotated, Literal

from fastmcp import FastMCP
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.mcp_environment import MCPEnvironment
from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation
from openenv.core.env_server.types import Observation, State
from pydantic import Field


class ToolboxEnvironment(MCPEnvironment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self):
        mcp = FastMCP("toolbox")
        self.position = 0

        @mcp.tool
        def echo(message: str) -> str:
            """Echo the message."""
            return message

        @mcp.tool
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        @mcp.tool
        def move(direction: Literal["up", "down"], steps: Annotated[int, Field(ge=1, le=5)]) -> int:
            """Move up or down 1-5 steps; returns the new position."""
            self.position += steps if direction == "up" else -steps
            return self.position

        @mcp.tool
        def total(values: list[float], scale: float = 1.0) -> float:
            """Sum a list of numbers (times scale)."""
            return sum(values) * scale

        @mcp.tool
        def note(title: str, tags: list[str] | None = None, counts: dict[str, int] | None = None) -> dict:
            """Store a note; returns what was stored."""
            return {"title": title, "tags": tags or [], "counts": counts or {}}

        @mcp.tool
        def ping() -> str:
            """No arguments."""
            return "pong"

        super().__init__(mcp)
        self._state = State(episode_id=str(uuid.uuid4()), step_count=0)

    def reset(self, seed=None, episode_id=None, **kwargs):
        self.position = 0
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        return Observation(done=False, reward=0.0)  # sparse: no tool fields at all, as upstream's echo_env

    def _step_impl(self, action, timeout_s=None, **kwargs):
        return Observation(done=False, reward=0.0, metadata={"error": f"unknown action {type(action).__name__}"})

    def step(self, action, timeout_s=None, **kwargs):
        self._state.step_count += 1
        observation = super().step(action, timeout_s=timeout_s, **kwargs)
        observation.reward = 1.0 if getattr(action, "tool_name", None) == "move" and self.position == 3 else 0.0
        return observation

    async def step_async(self, action, timeout_s=None, **kwargs):
        self._state.step_count += 1
        observation = await super().step_async(action, timeout_s=timeout_s, **kwargs)
        observation.reward = 1.0 if getattr(action, "tool_name", None) == "move" and self.position == 3 else 0.0
        return observation

    @property
    def state(self):
        return self._state


app = create_app(ToolboxEnvironment, CallToolAction, CallToolObservation, env_name="toolbox", max_concurrent_envs=16)
