"""Typed models of the Gymnasium server: one action field, one observation field.

The annotated spaces are ``CartPole-v1``'s (the default ``env_id``); the
environment replaces them with the served environment's own
``action_space``/``observation_space`` through ``GymEnvironment.field_spaces()``.
With exactly one space field each, both models unwrap, so the client's spaces
are the served environment's spaces themselves, not a ``Dict`` around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from gymnasium.spaces import Box, Discrete

from gym_openenv.models import Action, Observation, State

__all__ = ["GymAction", "GymObservation", "GymState"]

#: CartPole-v1's observation bounds (twice its termination thresholds): cart position, velocity, pole angle, angular velocity.
_CARTPOLE_HIGH = np.array([2 * 2.4, np.inf, 2 * 12 * 2 * np.pi / 360, np.inf], dtype=np.float32)


@dataclass
class GymAction(Action):
    """A value of the served environment's ``action_space``."""

    action: Annotated[Any, Discrete(2)]


@dataclass
class GymObservation(Observation):
    """A value of the served environment's ``observation_space``; the step's
    ``info`` dict travels in ``metadata`` (and reaches the client's ``info``)."""

    observation: Annotated[Any, Box(-_CARTPOLE_HIGH, _CARTPOLE_HIGH, (4,), np.float32)]


@dataclass
class GymState(State):
    """Which environment the session runs."""

    env_id: str = "CartPole-v1"
