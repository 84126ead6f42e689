"""An upstream-style game whose action is a plain ``int`` (no bounds in its
schema) and whose observation lists the legal actions, like upstream's
OpenSpiel, Connect Four and Maze environments. An illegal action ends the
episode with reward -1. Reset is seeded and deterministic.

Run: ``uvicorn pick_env:app`` from this folder.
"""

import random
import uuid
from typing import Any, List, Optional

from openenv.core.env_server import Action, Environment, Observation, State, create_app
from pydantic import Field

SLOTS = 5


class PickAction(Action):
    slot: int


class PickObservation(Observation):
    slots: List[int] = Field(default_factory=list)
    legal_actions: List[int] = Field(default_factory=list)


class PickEnvironment(Environment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self):
        super().__init__()
        self._state = State(episode_id=str(uuid.uuid4()), step_count=0)
        self._slots = [0] * SLOTS

    def reset(self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any) -> PickObservation:
        rng = random.Random(seed)
        self._slots = [rng.randint(0, 1) for _ in range(SLOTS)]
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        return self._observation(0.0, False)

    def step(self, action: PickAction, timeout_s: Optional[float] = None, **kwargs: Any) -> PickObservation:
        self._state.step_count += 1
        if action.slot not in self._legal():
            return self._observation(-1.0, True)
        self._slots[action.slot] = 1
        return self._observation(1.0, not self._legal())

    def _legal(self) -> List[int]:
        return [i for i, taken in enumerate(self._slots) if not taken]

    def _observation(self, reward: float, done: bool) -> PickObservation:
        return PickObservation(slots=list(self._slots), legal_actions=self._legal(), reward=reward, done=done)

    @property
    def state(self) -> State:
        return self._state


app = create_app(PickEnvironment, PickAction, PickObservation, env_name="pick", max_concurrent_envs=8)
