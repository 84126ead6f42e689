"""Echo: the smallest environment, for tests and protocol benchmarks."""

import uuid
from typing import Any

from gym_openenv.server import Environment
from gym_openenv.servers.echo.models import EchoAction, EchoObservation, EchoState


class EchoEnvironment(Environment[EchoAction, EchoObservation, EchoState]):
    """Echoes each message back; reward is 0.1 per character.

    Args:
        max_steps: episode length before truncation (None: never).
    """

    action_type = EchoAction
    observation_type = EchoObservation
    state_type = EchoState

    def __init__(self, max_steps: int | None = None):
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
        self.max_steps = max_steps
        self._state = EchoState()

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> EchoObservation:
        self._state = EchoState(episode_id=episode_id or uuid.uuid4().hex)
        return EchoObservation(echoed_message="", message_length=0, reward=0.0)

    def step(self, action: EchoAction) -> EchoObservation:
        self._state.step_count += 1
        message = action.message
        truncated = self.max_steps is not None and self._state.step_count >= self.max_steps
        return EchoObservation(
            echoed_message=message,
            message_length=len(message),
            reward=0.1 * len(message),
            done=truncated,
            truncated=truncated,
            metadata={"step": self._state.step_count},
        )

    @property
    def state(self) -> EchoState:
        return self._state
