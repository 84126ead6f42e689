"""The returns plot every example script writes at the end."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_returns(returns: list[float], title: str, path: str) -> None:
    """Episode returns as dots plus a running mean of 20, saved as a PNG at ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(returns, ".", alpha=0.4, label="episode")
    window = min(20, len(returns))
    if window:
        ax.plot(np.arange(window - 1, len(returns)), np.convolve(returns, np.ones(window) / window, "valid"), label=f"mean of {window}")
    ax.set(xlabel="episode", ylabel="return", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
