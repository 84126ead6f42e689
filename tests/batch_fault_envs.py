"""An environment whose sessions fail on command, for batch fault tests (served by real servers)."""

import time
from dataclasses import dataclass

from gym_openenv.models import Action, Observation, State
from gym_openenv.server import Environment


@dataclass
class FaultAction(Action):
    """``"ok"``, ``"raise"``, ``"hang:<seconds>"`` or ``"big:<characters>"`` (a long observation)."""

    command: str


@dataclass
class FaultObservation(Observation):
    text: str = ""
    steps: int = 0  # the server's step count in this episode, to check nothing was lost or doubled


class FaultyEnvironment(Environment[FaultAction, FaultObservation, State]):
    action_type = FaultAction
    observation_type = FaultObservation

    def __init__(self) -> None:
        self._state = State()

    def reset(self, seed=None, episode_id=None, **kwargs):
        self._state = State(episode_id=episode_id)
        return FaultObservation()

    def step(self, action):
        self._state.step_count += 1
        command, _, argument = action.command.partition(":")
        if command == "raise":
            raise RuntimeError(f"boom at step {self._state.step_count}")
        if command == "hang":
            time.sleep(float(argument))
        text = "x" * int(argument) if command == "big" else action.command
        return FaultObservation(text=text, steps=self._state.step_count, reward=1.0)

    @property
    def state(self):
        return self._state
