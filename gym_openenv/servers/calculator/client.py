"""A typed client for the calculator server, in OpenEnv's style (tool calls as actions)."""

from gym_openenv.servers.calculator.models import CalculatorObservation, CalculatorState
from gym_openenv.tools import ToolClient


class CalculatorEnv(ToolClient):
    observation_type = CalculatorObservation
    state_type = CalculatorState
