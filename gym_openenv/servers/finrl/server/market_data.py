"""Daily closing prices from a CSV, with indicators and turbulence, loaded once per process.

The shipped ``sp500_prices.csv`` holds daily adjusted closes of 20 S&P 500
constituents from 2009-01-02 to 2022-12-28: the 2009-2022 rows of the
``sp500_dataset.csv.gz`` that the skfolio package (BSD-3-Clause) ships, taken
from skfolio 1.12.2. Any CSV with a ``Date`` column (YYYY-MM-DD) followed by one
column of closing prices per ticker works the same way (``data_path=``).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gym_openenv.servers.finrl.server.indicators import compute_indicators, turbulence_index

__all__ = ["DEFAULT_DATA_PATH", "MarketData", "load_market_data"]

DEFAULT_DATA_PATH = Path(__file__).with_name("sp500_prices.csv")


@dataclass(frozen=True)
class MarketData:
    """Aligned daily arrays for a set of tickers."""

    tickers: tuple[str, ...]
    dates: np.ndarray  # (days,) of "YYYY-MM-DD" strings, ascending
    close: np.ndarray  # (days, tickers)
    indicators: np.ndarray  # (n_indicators, days, tickers)
    turbulence: np.ndarray  # (days,)

    def day_range(self, start: str | None, end: str | None) -> tuple[int, int]:
        """Indices ``[first, last]`` of the trading days in ``[start, end)``."""
        first = 0 if start is None else int(np.searchsorted(self.dates, start, side="left"))
        stop = len(self.dates) if end is None else int(np.searchsorted(self.dates, end, side="left"))
        return first, stop - 1


def _read_closes(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][0].lower() != "date":
        raise ValueError(f"data_path: {path} must start with a 'Date' column header")
    header, body = rows[0], rows[1:]
    dates = np.array([r[0] for r in body])
    if np.any(dates[1:] <= dates[:-1]):
        raise ValueError(f"data_path: dates in {path} must be strictly ascending")
    close = np.array([[float(x) for x in r[1:]] for r in body], dtype=np.float64)
    return header[1:], dates, close


@functools.lru_cache(maxsize=8)
def load_market_data(path: str, tickers: tuple[str, ...] | None, indicators: tuple[str, ...]) -> MarketData:
    """Closes of ``tickers`` (all columns when None) from ``path``, with indicators and turbulence.

    Raises:
        ValueError: naming unknown tickers or indicators, or a malformed file.
    """
    columns, dates, close = _read_closes(Path(path))
    chosen = tuple(columns) if tickers is None else tickers
    unknown = [t for t in chosen if t not in columns]
    if unknown:
        raise ValueError(f"tickers: {unknown} not in {path}; available: {columns}")
    if not chosen:
        raise ValueError("tickers: choose at least one ticker")
    close = close[:, [columns.index(t) for t in chosen]]
    if not np.all(np.isfinite(close)) or np.any(close <= 0):
        raise ValueError(f"data_path: prices of {list(chosen)} in {path} must be positive numbers")
    return MarketData(
        tickers=chosen,
        dates=dates,
        close=close,
        indicators=compute_indicators(close, list(indicators)),
        turbulence=turbulence_index(close),
    )
