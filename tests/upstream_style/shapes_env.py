"""A server written the way upstream OpenEnv environments are: pydantic models on
openenv-core's Action/Observation, an ``Environment`` subclass, ``create_app``.

Its models hold every JSON-schema shape pydantic produces (see ``ShapesAction``
and ``ShapesObservation``); ``step`` re-validates nothing by hand: openenv-core
validates each action against ``ShapesAction`` before the environment sees it.
Reset returns a bare ``Observation`` (every model field left out), as upstream's
MCP environments do; the first step after a reset leaves ``message`` and
``last_direction`` null. ``reset`` ignores the seed (the board is random).

Run: ``uvicorn shapes_env:app`` from this folder.
"""

import random
import uuid
from enum import Enum
from typing import Any, Dict, List, Literal, Optional, Tuple

from openenv.core.env_server import Action, Environment, Observation, State, create_app
from pydantic import BaseModel, Field


class Direction(str, Enum):
    NORTH = "north"
    EAST = "east"
    SOUTH = "south"
    WEST = "west"


class Target(BaseModel):
    x: int = Field(ge=0, le=4)
    y: int = Field(ge=0, le=4)
    note: str = ""


class ShapesAction(Action):
    direction: Direction
    gait: Literal["walk", "run", "crawl"]
    kind: Literal["move"] = "move"
    steps: int = Field(ge=1, le=3)
    distance: int = Field(gt=-10)
    power: float = Field(ge=0.0, le=1.0)
    tilt: float
    jump: bool
    label: str = Field(min_length=1, max_length=8)
    target: Target
    weights: List[float] = Field(min_length=3, max_length=3)
    offsets: Tuple[int, int]
    keys: List[int] = Field(max_length=4)
    hops: Optional[int]
    choice: int | str
    tags: List[str] = Field(default_factory=list)
    extras: Dict[str, Any] = Field(default_factory=dict)


class ShapesObservation(Observation):
    position: List[int] = Field(default_factory=lambda: [0, 0], min_length=2, max_length=2)
    grid: List[List[int]] = Field(default_factory=list)
    legal_actions: List[int] = Field(default_factory=list)
    score: float = 0.0
    count: int = 0
    level: int = Field(default=1, ge=1, le=5)
    phase: Literal["start", "middle", "end"] = "start"
    last_direction: Optional[Direction] = None
    history: List[str] = Field(default_factory=list)
    stats: Dict[str, float] = Field(default_factory=dict)
    blob: Dict[str, Any] = Field(default_factory=dict)
    flags: List[bool] = Field(default_factory=lambda: [False, False, False], min_length=3, max_length=3)
    target: Target = Field(default_factory=lambda: Target(x=0, y=0))
    message: Optional[str] = None
    anything: Any = None


class ShapesEnvironment(Environment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self):
        super().__init__()
        self._state = State(episode_id=str(uuid.uuid4()), step_count=0)
        self._rng = random.Random()

    def reset(self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any) -> Observation:
        self._state = State(episode_id=episode_id or str(uuid.uuid4()), step_count=0)
        return Observation(done=False, reward=0.0, metadata={"board": self._rng.randint(0, 9)})

    def step(self, action: ShapesAction, timeout_s: Optional[float] = None, **kwargs: Any) -> ShapesObservation:
        self._state.step_count += 1
        n = self._state.step_count
        first = n == 1
        return ShapesObservation(
            position=[action.target.x, action.target.y],
            grid=[[action.steps] * (n % 3 + 1)] * 2,
            legal_actions=[0, 2, 3] if n % 2 else [1],
            score=action.power * action.steps,
            count=n,
            level=min(5, n),
            phase="start" if first else "middle",
            last_direction=None if first else action.direction,
            history=[action.gait, action.label],
            stats={"tilt": action.tilt},
            blob={"offsets": list(action.offsets), "choice": action.choice, "hops": action.hops},
            flags=[action.jump, not action.jump, first],
            target=action.target,
            message=None if first else f"moved {action.direction.value}",
            anything=[n, {"keys": action.keys}],
            reward=float(action.steps),
            done=n >= 25,
        )

    @property
    def state(self) -> State:
        return self._state


app = create_app(ShapesEnvironment, ShapesAction, ShapesObservation, env_name="shapes", max_concurrent_envs=8)
