"""Environments that misbehave on purpose, for reliability tests (served by real servers)."""

import time
from dataclasses import dataclass

from gym_openenv.models import Action, Observation, State
from gym_openenv.server import Environment


@dataclass
class SleepAction(Action):
    """Seconds to sleep in the step (0 for an instant step)."""

    seconds: float


@dataclass
class SleepObservation(Observation):
    slept: float = 0.0


class SleepyEnvironment(Environment[SleepAction, SleepObservation, State]):
    """Each step sleeps as long as it is told: a stand-in for a hanging environment."""

    action_type = SleepAction
    observation_type = SleepObservation

    def __init__(self) -> None:
        self._state = State()

    def reset(self, seed=None, episode_id=None, **kwargs):
        self._state = State(episode_id=episode_id)
        return SleepObservation()

    def step(self, action):
        self._state.step_count += 1
        time.sleep(action.seconds)
        return SleepObservation(slept=action.seconds, reward=1.0)

    @property
    def state(self):
        return self._state


class CloseWatchEnvironment(SleepyEnvironment):
    """A sleepy environment that writes to ``log`` whether ``close()`` ran while a
    step was still running on another thread (unsafe for ALE, Playwright...)."""

    def __init__(self, log: str) -> None:
        super().__init__()
        self._log = log
        self._stepping = 0

    def step(self, action):
        self._stepping += 1
        try:
            return super().step(action)
        finally:
            self._stepping -= 1

    def close(self):
        with open(self._log, "a") as f:
            f.write("close during step\n" if self._stepping else "close\n")
