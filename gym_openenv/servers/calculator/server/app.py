"""The calculator server app: ``uvicorn gym_openenv.servers.calculator.server.app:app``."""

from gym_openenv.server import create_app
from gym_openenv.servers.calculator.server.environment import CalculatorEnvironment

app = create_app(CalculatorEnvironment)
