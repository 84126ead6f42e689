"""One contract over every registered environment, as SB3 tests every VecEnv with one test.

For each entry of ``gym_openenv/registry.yaml``, against real server processes:

* its folder validates (manifest, models, client, app, ``/schema`` agrees with the
  models, spaces derive, gymnasium's ``check_env`` through the server);
* the batched binary path and the plain OpenEnv JSON path give identical
  observations, rewards and flags for the same seeds and actions.

Per-server test files keep only what is particular to their environment.
"""

import gymnasium as gym
import pytest

import gym_openenv  # noqa: F401  (registers the ids)
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.registry import REGISTRY_PATH, load_registry
from gym_openenv.validation import validate_folder
from tests.compare import same

ENTRIES = load_registry()
NUM_ENVS = 2
STEPS = 12
#: Arguments that take wall-clock time out of an episode, so both paths see the same one
#: on a busy machine (a MiniWoB task otherwise ends after 10 real seconds).
TIMELESS = {"browsergym": {"episode_max_time_ms": 3_600_000}}


def _rollout(entry, url: str, protocol: str) -> list[tuple]:
    envs = gym.make_vec(entry.id, num_envs=NUM_ENVS, url=url, protocol=protocol)
    try:
        envs.action_space.seed(0)
        obs, _ = envs.reset(seed=0)
        trajectory = [("reset", obs)]
        for _ in range(STEPS):
            obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
            trajectory.append((obs, reward, terminated, truncated))
        return trajectory
    finally:
        envs.close()


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_folder_validates(entry):
    report = validate_folder(REGISTRY_PATH.parent / entry.server, entry.kwargs)
    assert not report.failed, "\n".join(" | ".join(row) for row in report.rows)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_batch_path_equals_openenv_path(entry):
    with LocalProcessProvider(entry.environment, {**entry.kwargs, **TIMELESS.get(entry.name, {})}) as server:
        batch = _rollout(entry, server.base_url, "batch")
        plain = _rollout(entry, server.base_url, "openenv")
    for t, (b, p) in enumerate(zip(batch, plain)):
        assert same(b, p), f"{entry.name}: step {t} differs between the batch and OpenEnv paths:\n{b}\n{p}"
