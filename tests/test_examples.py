"""Every example script runs end to end, with a tiny budget, in its own process."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

SMALL_SB3 = ["--total-timesteps", "256", "--num-envs", "2", "--n-steps", "64", "--batch-size", "64", "--n-epochs", "1", "--torch-threads", "1"]
SMALL_CLEANRL = ["--total-timesteps", "256", "--num-envs", "4", "--num-steps", "32", "--update-epochs", "1", "--torch-threads", "1"]


@pytest.mark.parametrize(
    "script, args",
    [
        ("sb3_cartpole.py", SMALL_SB3),
        ("sb3_cartpole.py", [*SMALL_SB3, "--native"]),
        ("ppo_cartpole.py", SMALL_CLEANRL),
        ("ppo_atari_sendrecv.py", SMALL_CLEANRL),
        ("sb3_atari.py", SMALL_SB3),
    ],
    ids=["sb3_cartpole", "sb3_cartpole_native", "ppo_cartpole", "ppo_atari_sendrecv", "sb3_atari"],
)
def test_example_runs(script, args, tmp_path):
    plot = tmp_path / "returns.png"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args, "--plot", str(plot)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert "episodes" in result.stdout and f"plot: {plot}" in result.stdout
    assert plot.stat().st_size > 1000  # a PNG, written where asked


@pytest.mark.parametrize("script", ["sb3_cartpole.py", "ppo_cartpole.py", "ppo_atari_sendrecv.py", "sb3_atari.py"])
def test_example_help_documents_every_argument(script):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--total-timesteps" in result.stdout and "--seed" in result.stdout
