"""Technical indicators and the turbulence index, on daily closing prices.

Every function takes a ``(days, tickers)`` float array of closes and returns an
array of the same shape, computed per ticker and causally (day ``t`` uses days
``<= t`` only). The names and definitions follow the ``stockstats`` columns that
FinRL's ``FeatureEngineer`` uses (``macd``, ``boll_ub``, ``rsi_30``, ...).

The shipped data has closing prices only, so high = low = close: the typical
price of CCI is the close, and DX's directional movements are the up and down
close-to-close moves (true range = ``|close - previous close|``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["INDICATORS", "compute_indicators", "turbulence_index"]


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average seeded with the first value."""
    out = np.empty_like(values)
    out[0] = values[0]
    for t in range(1, len(values)):
        out[t] = alpha * values[t] + (1.0 - alpha) * out[t - 1]
    return out


def _rolling(close: np.ndarray, window: int, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    # Windows shorter than `window` at the start (stockstats' min_periods=1):
    # pad with NaN and let the nan-aware reducer ignore the padding.
    padded = np.concatenate([np.full((window - 1, close.shape[1]), np.nan), close])
    windows = sliding_window_view(padded, window, axis=0)  # (days, tickers, window)
    return reduce(windows)


def sma(close: np.ndarray, window: int) -> np.ndarray:
    return _rolling(close, window, lambda w: np.nanmean(w, axis=-1))


def macd(close: np.ndarray) -> np.ndarray:
    """EMA(12) - EMA(26)."""
    return ema(close, 2 / 13) - ema(close, 2 / 27)


def bollinger(close: np.ndarray, window: int = 20, width: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower Bollinger bands: SMA(20) +- 2 sample standard deviations."""
    mid = sma(close, window)
    std = _rolling(close, window, _sample_std)
    return mid + width * std, mid - width * std


def _sample_std(w: np.ndarray) -> np.ndarray:
    # ddof=1 over the non-NaN entries; 0 for a single observation.
    count = np.sum(~np.isnan(w), axis=-1)
    squares = np.nansum((w - np.nanmean(w, axis=-1, keepdims=True)) ** 2, axis=-1)
    return np.sqrt(squares / np.maximum(count - 1, 1))


def rsi(close: np.ndarray, window: int = 30) -> np.ndarray:
    """Wilder's relative strength index in [0, 100] (50 when the price never moved)."""
    change = np.diff(close, axis=0, prepend=close[:1])
    gain = ema(np.maximum(change, 0.0), 1 / window)
    loss = ema(np.maximum(-change, 0.0), 1 / window)
    total = gain + loss
    return np.where(total > 0, 100.0 * gain / np.where(total > 0, total, 1.0), 50.0)


def cci(close: np.ndarray, window: int = 30) -> np.ndarray:
    """Commodity channel index: (tp - SMA(tp)) / (0.015 * mean absolute deviation)."""
    mean = sma(close, window)

    def mad(w: np.ndarray) -> np.ndarray:
        return np.nanmean(np.abs(w - np.nanmean(w, axis=-1, keepdims=True)), axis=-1)

    deviation = _rolling(close, window, mad)
    return np.where(deviation > 0, (close - mean) / (0.015 * np.where(deviation > 0, deviation, 1.0)), 0.0)


def dx(close: np.ndarray, window: int = 30) -> np.ndarray:
    """Directional movement index in [0, 100] from Wilder-smoothed +DM, -DM and true range."""
    change = np.diff(close, axis=0, prepend=close[:1])
    plus = ema(np.maximum(change, 0.0), 1 / window)
    minus = ema(np.maximum(-change, 0.0), 1 / window)
    total = plus + minus
    return np.where(total > 0, 100.0 * np.abs(plus - minus) / np.where(total > 0, total, 1.0), 0.0)


#: Indicator name -> function of closes, the default set of FinRL's examples.
INDICATORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "macd": macd,
    "boll_ub": lambda c: bollinger(c)[0],
    "boll_lb": lambda c: bollinger(c)[1],
    "rsi_30": lambda c: rsi(c, 30),
    "cci_30": lambda c: cci(c, 30),
    "dx_30": lambda c: dx(c, 30),
    "close_30_sma": lambda c: sma(c, 30),
    "close_60_sma": lambda c: sma(c, 60),
}


def compute_indicators(close: np.ndarray, names: list[str]) -> np.ndarray:
    """``(len(names), days, tickers)`` array of the named indicators.

    Raises:
        ValueError: for a name not in :data:`INDICATORS`.
    """
    unknown = [n for n in names if n not in INDICATORS]
    if unknown:
        raise ValueError(f"indicators: unknown {unknown}; choose from {sorted(INDICATORS)}")
    return np.stack([INDICATORS[n](close) for n in names]) if names else np.empty((0, *close.shape))


def turbulence_index(close: np.ndarray, lookback: int = 252) -> np.ndarray:
    """Kritzman-Li turbulence per day: the Mahalanobis distance of the day's
    returns from the mean and covariance of the previous ``lookback`` days'
    returns (0 until a full lookback exists), as FinRL's ``add_turbulence``."""
    returns = close[1:] / close[:-1] - 1.0
    turbulence = np.zeros(len(close))
    for day in range(lookback + 1, len(close)):
        history = returns[day - 1 - lookback : day - 1]
        deviation = returns[day - 1] - history.mean(axis=0)
        covariance = np.atleast_2d(np.cov(history, rowvar=False))
        turbulence[day] = float(deviation @ np.linalg.pinv(covariance) @ deviation)
    return turbulence
