"""Calculator's models: OpenEnv's MCP actions, and a tool observation that carries the task."""

from dataclasses import dataclass

from gym_openenv.models import State
from gym_openenv.server.mcp import CallToolAction, CallToolObservation, ListToolsAction

__all__ = ["CalculatorObservation", "CalculatorState", "CallToolAction", "ListToolsAction"]


@dataclass(kw_only=True)
class CalculatorObservation(CallToolObservation):
    """A tool call's outcome (``tool_name``, ``result``, ``error``) and the episode's ``question``."""

    question: str = ""


@dataclass(kw_only=True)
class CalculatorState(State):
    """The task of the episode and whether an answer was submitted."""

    question: str = ""
    answer: float = 0.0
    submitted: bool = False
    correct: bool = False
