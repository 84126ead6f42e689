"""Typed models of the FinRL stock-trading environment.

Field names are upstream OpenEnv's ``finrl_env`` names (``actions`` in,
``state``, ``portfolio_value`` and ``date`` out), so a client written for
upstream's FinRL environment trades on this server over OpenEnv's JSON protocol.

The spaces declared here are placeholders for one ticker; the environment
sizes them for its tickers and indicators through ``field_spaces()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.models import Action, Observation, State

__all__ = ["FinRLAction", "FinRLObservation", "FinRLState"]


@dataclass
class FinRLAction(Action):
    """One number per ticker in [-1, 1]: the fraction of ``hmax`` shares to
    sell (negative) or buy (positive), truncated to whole shares as in FinRL."""

    actions: Annotated[np.ndarray, Box(-1.0, 1.0, (1,), np.float32)]


@dataclass
class FinRLObservation(Observation):
    """FinRL's state vector ``[cash, prices, holdings, indicator_1 (per ticker), ...]``
    plus exact bookkeeping (in ``info``)."""

    state: Annotated[np.ndarray, Box(-np.inf, np.inf, (1,), np.float32)]
    date: str | None = None
    portfolio_value: float | None = None
    cash: float | None = None
    holdings: list[int] = field(default_factory=list)
    turbulence: float | None = None
    total_cost: float | None = None
    total_trades: int = 0


@dataclass
class FinRLState(State):
    """Where the episode is: its first and current trading day and the portfolio value."""

    start_date: str | None = None
    date: str | None = None
    portfolio_value: float | None = None
