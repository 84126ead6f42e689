"""Echo's action, observation and state (OpenEnv's echo_env field names)."""

from dataclasses import dataclass

from gym_openenv.models import Action, Observation, State


@dataclass
class EchoAction(Action):
    """The message to echo (a ``Text`` space)."""

    message: str


@dataclass
class EchoObservation(Observation):
    """The echoed message; its length is not part of the space (it goes to ``info``)."""

    echoed_message: str = ""
    message_length: int = 0


@dataclass
class EchoState(State):
    """Base state; echo keeps nothing else."""
