"""Calculator: arithmetic tasks an agent solves by calling tools (an MCP tool environment)."""

import dataclasses
import math
import random
import uuid
from typing import Annotated, Any

from pydantic import Field

from gym_openenv.server.mcp import CallToolAction, CallToolObservation, MCPEnvironment, tool
from gym_openenv.servers.calculator.models import CalculatorObservation, CalculatorState

#: Tool arguments: any number an episode can need (so the action space is a bounded Box).
Number = Annotated[float, Field(ge=-1e12, le=1e12)]

_OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class CalculatorEnvironment(MCPEnvironment):
    """Each episode poses one arithmetic task, e.g. ``What is (17 + 5) * 3 - 8?``.

    Tools: ``add``, ``subtract``, ``multiply``, ``divide`` (two numbers each) and
    ``submit(answer)``. Submitting ends the episode with reward 1.0 if the answer
    is right (to 1e-6) and 0.0 if not; every other call has reward 0.0. An
    episode without a submission is truncated after ``max_steps`` calls. The
    task depends only on the reset seed.

    Args:
        max_steps: tool calls per episode before truncation.
        max_operand: operands are integers in ``[1, max_operand]``.
        num_operations: operations per task (``+``, ``-``, ``*``).
    """

    observation_type = CalculatorObservation
    state_type = CalculatorState

    def __init__(self, max_steps: int = 20, max_operand: int = 99, num_operations: int = 3):
        if max_steps < 1 or max_operand < 1 or num_operations < 1:
            raise ValueError(f"max_steps, max_operand and num_operations must be >= 1, got {max_steps}, {max_operand}, {num_operations}")
        super().__init__()
        self.max_steps = max_steps
        self.max_operand = max_operand
        self.num_operations = num_operations
        self._state = CalculatorState()
        self._rng = random.Random()

    # tools

    @tool
    def add(self, a: Number, b: Number) -> float:
        """Return a + b."""
        return a + b

    @tool
    def subtract(self, a: Number, b: Number) -> float:
        """Return a - b."""
        return a - b

    @tool
    def multiply(self, a: Number, b: Number) -> float:
        """Return a * b."""
        return a * b

    @tool
    def divide(self, a: Number, b: Number) -> float:
        """Return a / b (b must not be zero)."""
        if b == 0:
            raise ValueError("division by zero")
        return a / b

    @tool
    def submit(self, answer: Number) -> str:
        """Submit the final answer to the task; ends the episode."""
        self._state.submitted = True
        self._state.correct = _close(answer, self._state.answer)
        return "correct" if self._state.correct else "incorrect"

    # episode

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> CalculatorObservation:
        if seed is not None:
            self._rng.seed(seed)
        question, answer = self._task()
        self._state = CalculatorState(episode_id=episode_id or uuid.uuid4().hex, question=question, answer=answer)
        return CalculatorObservation(question=question)

    def _task(self) -> tuple[str, float]:
        value = self._rng.randint(1, self.max_operand)
        text = str(value)
        for i in range(self.num_operations):
            symbol = self._rng.choice(sorted(_OPERATIONS))
            operand = self._rng.randint(1, self.max_operand)
            value = _OPERATIONS[symbol](value, operand)
            text = f"{text} {symbol} {operand}" if i == 0 else f"({text}) {symbol} {operand}"
        return f"What is {text}? Use the tools, then submit the answer.", float(value)

    def after_tool_call(self, action: CallToolAction, observation: CallToolObservation) -> CalculatorObservation:
        fields = {f.name: getattr(observation, f.name) for f in dataclasses.fields(observation)}
        result = CalculatorObservation(**fields, question=self._state.question)
        result.reward = 0.0
        if action.tool_name == "submit" and observation.error is None:
            result.reward = 1.0 if self._state.correct else 0.0
            result.done = True
        elif self._state.step_count >= self.max_steps:
            result.done = result.truncated = True
        return result

    @property
    def state(self) -> CalculatorState:
        return self._state


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
