"""Every example script runs end to end, with a tiny budget, in its own process."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Runs a script as ``__main__`` after making sure openenv/gym-v0 is registered
#: (until registry.yaml lists it; then the registration below is skipped).
LAUNCHER = textwrap.dedent(
    """
    import runpy, sys
    import gymnasium as gym
    import gym_openenv.registry as registry
    if "openenv/gym-v0" not in gym.registry:
        gym.register("openenv/gym-v0", entry_point=registry.ENTRY_POINT, vector_entry_point=registry.VECTOR_ENTRY_POINT,
                     kwargs={"environment": "servers.gym.server.environment:GymEnvironment", "env_id": "CartPole-v1"})
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)

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
        [sys.executable, "-c", LAUNCHER, str(EXAMPLES / script), *args, "--plot", str(plot)],
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
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--total-timesteps" in result.stdout and "--seed" in result.stdout
