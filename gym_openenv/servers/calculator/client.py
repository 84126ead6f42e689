"""A typed client for the calculator server, in OpenEnv's style (tool calls as actions)."""

from gym_openenv.client import EnvClient
from gym_openenv.servers.calculator.models import CalculatorObservation, CalculatorState, CallToolAction


class CalculatorEnv(EnvClient[CallToolAction, CalculatorObservation, CalculatorState]):
    action_type = CallToolAction
    observation_type = CalculatorObservation
    state_type = CalculatorState
    environment = "gym_openenv.servers.calculator.server.environment:CalculatorEnvironment"
