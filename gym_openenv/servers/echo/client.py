"""A typed client for the echo server, in OpenEnv's style."""

from gym_openenv.client import EnvClient
from gym_openenv.servers.echo.models import EchoAction, EchoObservation, EchoState


class EchoEnv(EnvClient[EchoAction, EchoObservation, EchoState]):
    action_type = EchoAction
    observation_type = EchoObservation
    state_type = EchoState
