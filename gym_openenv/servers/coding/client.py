"""A typed client for the coding server, in OpenEnv's style."""

from gym_openenv.client import EnvClient
from gym_openenv.servers.coding.models import CodeAction, CodeObservation, CodeState


class CodingEnv(EnvClient[CodeAction, CodeObservation, CodeState]):
    action_type = CodeAction
    observation_type = CodeObservation
    state_type = CodeState
