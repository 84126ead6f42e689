"""A stock-trading environment in the spirit of FinRL's ``StockTradingEnv``.

Each step is one trading day. The agent's action, one number in [-1, 1] per
ticker, is scaled by ``hmax`` and truncated to whole shares: negative sells,
positive buys. Sells execute first (largest first), then buys (largest first)
while cash lasts, at the day's close, with ``sell_cost_pct`` / ``buy_cost_pct``
charged on the traded value. When the turbulence index is at or above
``turbulence_threshold`` the environment ignores the action and sells every
holding. The reward is the change in portfolio value (cash + holdings at
closing prices) over the day, times ``reward_scaling``.

Episodes are ``episode_length`` trading days inside the chosen split: ``train``
is ``[start_date, split_date)``, ``test`` is ``[split_date, end_date)``; the
first day is drawn from the reset seed (``random_start=True``) or is the
split's first day. An episode ends by its length or at the split's last day,
both a time limit: ``done`` and ``truncated`` are set.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from gymnasium.spaces import Box

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces
from gym_openenv.servers.finrl.models import FinRLAction, FinRLObservation, FinRLState
from gym_openenv.servers.finrl.server.indicators import INDICATORS
from gym_openenv.servers.finrl.server.market_data import DEFAULT_DATA_PATH, MarketData, load_market_data

__all__ = ["FinRLEnvironment"]

SPLITS = ("train", "test")


class FinRLEnvironment(Environment[FinRLAction, FinRLObservation, FinRLState]):
    """Multi-stock trading on daily closes with indicators, costs and a turbulence cut-off."""

    action_type = FinRLAction
    observation_type = FinRLObservation
    state_type = FinRLState

    def __init__(
        self,
        tickers: Sequence[str] | None = None,
        split: str = "train",
        start_date: str = "2010-01-01",
        split_date: str = "2021-01-01",
        end_date: str | None = None,
        episode_length: int | None = 252,
        random_start: bool = True,
        initial_amount: float = 1_000_000.0,
        hmax: int = 100,
        buy_cost_pct: float = 0.001,
        sell_cost_pct: float = 0.001,
        reward_scaling: float = 1e-4,
        turbulence_threshold: float | None = None,
        indicators: Sequence[str] = tuple(INDICATORS),
        data_path: str | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split: {split!r} is not one of {SPLITS}")
        if episode_length is not None and episode_length < 1:
            raise ValueError(f"episode_length: {episode_length} must be at least 1 (or None for the whole split)")
        if hmax < 1:
            raise ValueError(f"hmax: {hmax} must be at least 1 share")
        if initial_amount <= 0:
            raise ValueError(f"initial_amount: {initial_amount} must be positive")
        for name, pct in (("buy_cost_pct", buy_cost_pct), ("sell_cost_pct", sell_cost_pct)):
            if not 0.0 <= pct < 1.0:
                raise ValueError(f"{name}: {pct} must be in [0, 1)")
        if isinstance(tickers, str):
            tickers = [tickers]

        self.data: MarketData = load_market_data(
            str(data_path or DEFAULT_DATA_PATH), None if tickers is None else tuple(tickers), tuple(indicators)
        )
        self.split = split
        self.indicator_names = tuple(indicators)
        self.episode_length = episode_length
        self.random_start = random_start
        self.initial_amount = float(initial_amount)
        self.hmax = int(hmax)
        self.buy_cost_pct = float(buy_cost_pct)
        self.sell_cost_pct = float(sell_cost_pct)
        self.reward_scaling = float(reward_scaling)
        self.turbulence_threshold = turbulence_threshold

        span = (start_date, split_date) if split == "train" else (split_date, end_date)
        self.first_day, self.last_day = self.data.day_range(*span)
        days_needed = 1 if episode_length is None else episode_length
        if self.last_day - self.first_day < days_needed:
            raise ValueError(
                f"split: {split!r} spans {max(self.last_day - self.first_day + 1, 0)} trading days in "
                f"[{span[0]}, {span[1] or 'end'}), too few for episode_length={episode_length}"
            )

        n = len(self.data.tickers)
        self.n_tickers = n
        self.n_features = 1 + 2 * n + len(self.indicator_names) * n
        self._rng = np.random.default_rng()
        self._state = FinRLState()
        self._reset_portfolio(self.first_day)

    # --- spaces and metadata ---------------------------------------------------

    def field_spaces(self) -> FieldSpaces:
        return {
            "action": {"actions": Box(-1.0, 1.0, (self.n_tickers,), np.float32)},
            "observation": {"state": Box(-np.inf, np.inf, (self.n_features,), np.float32)},
        }

    def metadata(self) -> EnvironmentMetadata:
        first, last = self.data.dates[self.first_day], self.data.dates[self.last_day]
        return replace(
            super().metadata(),
            extra={
                "split": self.split,
                "tickers": list(self.data.tickers),
                "indicators": list(self.indicator_names),
                "features": ["cash", *(f"price:{t}" for t in self.data.tickers),
                             *(f"holding:{t}" for t in self.data.tickers),
                             *(f"{i}:{t}" for i in self.indicator_names for t in self.data.tickers)],
                "first_date": str(first),
                "last_date": str(last),
            },
        )

    # --- episode ----------------------------------------------------------------

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> FinRLObservation:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self.random_start and self.episode_length is not None:
            start = int(self._rng.integers(self.first_day, self.last_day - self.episode_length + 1))
        else:
            start = self.first_day
        self._reset_portfolio(start)
        self._state = FinRLState(
            episode_id=episode_id or str(uuid.uuid4()),
            step_count=0,
            start_date=str(self.data.dates[start]),
            date=str(self.data.dates[start]),
            portfolio_value=self.portfolio_value,
        )
        return self._observation(reward=None, done=False)

    def _reset_portfolio(self, start: int) -> None:
        self.day = start
        self.end_day = self.last_day if self.episode_length is None else min(start + self.episode_length, self.last_day)
        self.cash = self.initial_amount
        self.holdings = np.zeros(self.n_tickers, dtype=np.int64)
        self.total_cost = 0.0
        self.total_trades = 0

    def step(self, action: FinRLAction) -> FinRLObservation:
        if self.day >= self.end_day:
            raise ValueError("step: the episode is over; call reset() first")
        shares = self._shares(action.actions)
        value_before = self.portfolio_value
        prices = self.data.close[self.day]
        if self.turbulence_threshold is not None and self.data.turbulence[self.day] >= self.turbulence_threshold:
            shares = -self.holdings.copy()  # liquidate everything, buy nothing
        for i in np.argsort(shares):  # most negative first
            if shares[i] < 0:
                self._sell(i, -int(shares[i]), prices[i])
        for i in np.argsort(shares)[::-1]:  # largest first
            if shares[i] > 0:
                self._buy(i, int(shares[i]), prices[i])
        self.day += 1
        self._state.step_count += 1
        self._state.date = str(self.data.dates[self.day])
        self._state.portfolio_value = self.portfolio_value
        reward = (self.portfolio_value - value_before) * self.reward_scaling
        return self._observation(reward=reward, done=self.day >= self.end_day)

    def _shares(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (self.n_tickers,):
            raise ValueError(f"actions: expected shape ({self.n_tickers},), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1.0):
            raise ValueError(f"actions: values must be finite and in [-1, 1], got {a.tolist()}")
        # Rounding to 6 decimals first keeps float32 actions such as 0.29
        # (stored as 0.2899999...) from truncating to one share less.
        return np.fix(np.round(a * self.hmax, 6)).astype(np.int64)

    def _sell(self, i: int, shares: int, price: float) -> None:
        n = min(shares, int(self.holdings[i]))
        if n == 0:
            return
        self.cash += price * n * (1.0 - self.sell_cost_pct)
        self.total_cost += price * n * self.sell_cost_pct
        self.holdings[i] -= n
        self.total_trades += 1

    def _buy(self, i: int, shares: int, price: float) -> None:
        affordable = int(self.cash // (price * (1.0 + self.buy_cost_pct)))
        n = min(shares, affordable)
        if n == 0:
            return
        self.cash -= price * n * (1.0 + self.buy_cost_pct)
        self.total_cost += price * n * self.buy_cost_pct
        self.holdings[i] += n
        self.total_trades += 1

    @property
    def portfolio_value(self) -> float:
        return float(self.cash + self.holdings @ self.data.close[self.day])

    def _observation(self, reward: float | None, done: bool) -> FinRLObservation:
        vector = np.concatenate(
            [[self.cash], self.data.close[self.day], self.holdings, self.data.indicators[:, self.day, :].reshape(-1)]
        ).astype(np.float32)
        return FinRLObservation(
            state=vector,
            date=str(self.data.dates[self.day]),
            portfolio_value=self.portfolio_value,
            cash=float(self.cash),
            holdings=self.holdings.tolist(),
            turbulence=float(self.data.turbulence[self.day]),
            total_cost=self.total_cost,
            total_trades=self.total_trades,
            reward=reward,
            done=done,
            truncated=done,
        )

    @property
    def state(self) -> FinRLState:
        return self._state
