"""A typed client for the REPL server, in OpenEnv's style."""

from gym_openenv.client import EnvClient
from gym_openenv.servers.repl.models import ReplAction, ReplObservation, ReplState


class ReplEnv(EnvClient[ReplAction, ReplObservation, ReplState]):
    action_type = ReplAction
    observation_type = ReplObservation
    state_type = ReplState
