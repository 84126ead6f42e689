"""gym_openenv/servers/gym: any Gymnasium environment through a real server process.

The reference is always the same environment made natively with
``gymnasium.make``: for the same seed and actions every observation, reward,
``terminated``/``truncated`` flag and ``info`` must be identical.
"""

import contextlib
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import gym_openenv  # noqa: F401  (registers openenv/gym-v0)
from gym_openenv.errors import ServerStartError
from gym_openenv.inprocess import InProcessEnv
from gym_openenv.servers.gym.client import GymEnv
from gym_openenv.servers.gym.models import GymAction
from gym_openenv.servers.gym.server.environment import GymEnvironment
from tests.compare import same

GYM_ID = "openenv/gym-v0"
ENVIRONMENT = "gym_openenv.servers.gym.server.environment:GymEnvironment"

#: A module (written to a temporary directory, imported by the server through
#: ``env_id="gym_space_zoo:SpaceZoo-v0"``) registering an environment whose
#: spaces are the composite ones no built-in environment has.
SPACE_ZOO = textwrap.dedent(
    '''
    import gymnasium as gym
    import numpy as np
    from gymnasium import spaces


    class SpaceZoo(gym.Env):
        """Dict observations, Dict actions of MultiDiscrete, MultiBinary and Box."""

        observation_space = spaces.Dict({
            "position": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "flags": spaces.MultiBinary(3),
            "counts": spaces.MultiDiscrete([3, 4]),
        })
        action_space = spaces.Dict({
            "move": spaces.Box(-0.1, 0.1, (2,), np.float32),
            "toggle": spaces.MultiBinary(3),
            "choice": spaces.MultiDiscrete([3, 4]),
        })

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self._obs = {
                "position": self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32),
                "flags": self.np_random.integers(0, 2, 3).astype(np.int8),
                "counts": self.np_random.integers(0, [3, 4]),
            }
            self._t = 0
            return self._obs, {"start": self._obs["position"].tolist()}

        def step(self, action):
            self._t += 1
            position = np.clip(self._obs["position"] + action["move"], -1, 1).astype(np.float32)
            self._obs = {"position": position, "flags": action["toggle"], "counts": action["choice"]}
            reward = float(-np.abs(position).sum() + self.np_random.normal())
            return self._obs, reward, bool(np.abs(position).max() >= 1.0), self._t >= 20, {"t": self._t}


    gym.register("SpaceZoo-v0", entry_point=SpaceZoo)
    '''
)


@pytest.fixture(scope="module")
def space_zoo(tmp_path_factory, monkeypatch_module) -> dict:
    """gym.make kwargs serving SpaceZoo-v0 (the module is on the server's and our path)."""
    directory = tmp_path_factory.mktemp("zoo")
    (directory / "gym_space_zoo.py").write_text(SPACE_ZOO)
    monkeypatch_module.syspath_prepend(str(directory))
    return {"env_id": "gym_space_zoo:SpaceZoo-v0", "provider_options": {"env": {"PYTHONPATH": str(directory)}}}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _run_side_by_side(env: gym.Env, reference: gym.Env, steps: int, seed: int) -> int:
    """Same seeded random actions through the server and natively; returns episode ends."""
    assert env.action_space == reference.action_space
    assert env.observation_space == reference.observation_space
    obs, info = env.reset(seed=seed)
    ref_obs, ref_info = reference.reset(seed=seed)
    assert same(obs, ref_obs) and same(info, ref_info)
    reference.action_space.seed(seed)
    ends = 0
    for t in range(steps):
        action = reference.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = reference.step(action)
        assert same(obs, ref_obs), f"observation differs at step {t}: {obs} vs {ref_obs}"
        assert (reward, terminated, truncated) == (ref_reward, ref_terminated, ref_truncated), f"step {t}"
        assert type(reward) is float and obs in env.observation_space
        assert same(info, ref_info), f"info differs at step {t}: {info} vs {ref_info}"
        if terminated or truncated:
            ends += 1
            obs, info = env.reset()  # no seed: both RNGs carry on from the last episode
            ref_obs, ref_info = reference.reset()
            assert same(obs, ref_obs) and same(info, ref_info)
    return ends


# --- in process ---------------------------------------------------------------


def test_environment_in_process_equals_native():
    env = InProcessEnv(ENVIRONMENT, env_id="Pendulum-v1")
    assert _run_side_by_side(env, gym.make("Pendulum-v1"), steps=250, seed=3) == 1  # one 200-step time limit


def test_unknown_env_id_is_a_value_error():
    with pytest.raises(ValueError, match="env_id: .*CartPol"):
        GymEnvironment(env_id="CartPol-v1")


def test_unservable_space_is_a_value_error():
    with _registered("GraphObs-v0", _GraphObsEnv), pytest.raises(ValueError, match="observation space Graph.*cannot be served"):
        GymEnvironment(env_id="GraphObs-v0")


def test_time_limit_is_done_and_truncated():
    env = GymEnvironment(env_id="CartPole-v1", max_episode_steps=1)
    env.reset(seed=0)
    obs = env.step(GymAction(action=0))
    assert (obs.done, obs.truncated) == (True, True)


def test_termination_wins_when_both_flags_are_set():
    # Gymnasium allows terminated and truncated together; a terminal state must not be bootstrapped.
    with _registered("EndsAtLimit-v0", _EndsAtLimit):
        env = GymEnvironment(env_id="EndsAtLimit-v0")
        env.reset(seed=0)
        obs = env.step(GymAction(action=1))
        assert (obs.done, obs.truncated, obs.metadata) == (True, False, {"both": True})


@contextlib.contextmanager
def _registered(env_id: str, env_cls: type):
    gym.register(env_id, entry_point=env_cls)
    try:
        yield
    finally:
        del gym.registry[env_id]


class _GraphObsEnv(gym.Env):
    observation_space = gym.spaces.Graph(node_space=gym.spaces.Discrete(3), edge_space=None)
    action_space = gym.spaces.Discrete(2)


class _EndsAtLimit(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 1, 1.0, True, True, {"both": True}


# --- through gym.make / gym.make_vec: real server processes ---------------------


def test_cartpole_bit_identical_to_native():
    env = gym.make(GYM_ID)
    try:
        assert env.spec.id == GYM_ID
        ends = _run_side_by_side(env, gym.make("CartPole-v1"), steps=400, seed=0)
        assert ends >= 10
    finally:
        env.close()


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("MountainCarContinuous-v0", {}),  # Box actions
        ("FrozenLake-v1", {"map_name": "8x8"}),  # Discrete observations, info["prob"]
        ("Blackjack-v1", {"natural": True}),  # Tuple observations
        ("Acrobot-v1", {"max_episode_steps": 30}),  # truncation by a make() kwarg
    ],
)
def test_spaces_and_steps_carried_over(env_id, kwargs):
    env = gym.make(GYM_ID, env_id=env_id, **kwargs)
    try:
        ends = _run_side_by_side(env, gym.make(env_id, **kwargs), steps=120, seed=7)
        assert ends >= 1 or env_id == "MountainCarContinuous-v0"
    finally:
        env.close()


def test_dict_multidiscrete_multibinary_spaces(space_zoo):
    import gym_space_zoo  # noqa: F401  (registers SpaceZoo-v0 here too)

    env = gym.make(GYM_ID, **space_zoo)
    try:
        assert isinstance(env.observation_space, gym.spaces.Dict)
        assert env.action_space == gym.make("SpaceZoo-v0").action_space
        assert _run_side_by_side(env, gym.make("SpaceZoo-v0"), steps=60, seed=1) >= 2
    finally:
        env.close()


def test_check_env_and_truncation():
    env = gym.make(GYM_ID, env_id="CartPole-v1", max_episode_steps=5)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        env.reset(seed=0)
        flags = [env.step(0)[2:4] for _ in range(5)]
        assert flags == [(False, False)] * 4 + [(False, True)]  # the pole has not fallen in 5 steps
    finally:
        env.close()


def test_unknown_env_id_through_gym_make():
    with pytest.raises(ServerStartError, match="env_id: .CartPol-v1.: .*Did you mean"):
        gym.make(GYM_ID, env_id="CartPol-v1").close()


def test_make_vec_equals_sync_vector_env():
    n, seed = 6, 11
    envs = gym.make_vec(GYM_ID, num_envs=n)
    reference = SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)])
    try:
        obs, _ = envs.reset(seed=seed)
        ref_obs, _ = reference.reset(seed=seed)
        assert np.array_equal(obs, ref_obs) and obs.dtype == ref_obs.dtype
        actions = np.random.default_rng(seed)
        resets = 0
        for t in range(150):
            a = actions.integers(2, size=n)
            result, ref = envs.step(a), reference.step(a)
            for got, want, name in zip(result[:4], ref[:4], ("obs", "reward", "terminated", "truncated")):
                assert np.array_equal(got, want), f"{name} differs at step {t}"
            resets += int(ref[2].sum() + ref[3].sum())
        assert resets >= 5  # autoresets (NEXT_STEP) were exercised
    finally:
        envs.close()
        reference.close()


def test_typed_client():
    native = gym.make("FrozenLake-v1")
    native.reset(seed=0)
    with GymEnv.launch(env_id="FrozenLake-v1").sync() as client:
        result = client.reset(seed=0)
        assert result.observation.observation == 0
        result = client.step(GymAction(action=2))
        observation, reward, _, _, info = native.step(2)
        assert (result.observation.observation, result.reward, result.observation.metadata) == (observation, reward, info)


def test_record_episode_statistics_vector_wrapper():
    # gymnasium's own vector wrapper reads the NEXT_STEP autoresets of OpenEnvVectorEnv right.
    n, seed = 4, 5
    envs = RecordEpisodeStatistics(gym.make_vec(GYM_ID, num_envs=n, num_servers=1))
    reference = RecordEpisodeStatistics(SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(n)]))
    try:
        returns, ref_returns = [], []
        for vec, out in ((envs, returns), (reference, ref_returns)):
            vec.reset(seed=seed)
            actions = np.random.default_rng(seed)
            for _ in range(150):
                *_, info = vec.step(actions.integers(2, size=n))
                if "episode" in info:
                    out += info["episode"]["r"][info["_episode"]].tolist()
        assert returns == ref_returns and len(returns) >= 10
    finally:
        envs.close()
        reference.close()
