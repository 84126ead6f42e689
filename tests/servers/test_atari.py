"""The Atari server's environment against ale-py's own ``ALE/<Game>-v5``.

Fidelity is the point: for the same seed and actions, every observation,
reward and terminated/truncated flag must be bit-identical to
``gym.make("ALE/<Game>-v5")``, across episode ends and unseeded resets.
"""

from __future__ import annotations

import asyncio

import ale_py
import gymnasium as gym
import numpy as np
import pytest
from fastapi.testclient import TestClient
from gymnasium.spaces import Box, Discrete
from gymnasium.utils.env_checker import check_env
from openenv.core.generic_client import GenericEnvClient

import gym_openenv  # noqa: F401  (registers openenv/* from registry.yaml)
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.server.app import create_app
from gym_openenv.spaces import ModelSpec
from gym_openenv.servers.atari.client import AtariEnv
from gym_openenv.servers.atari.models import AtariAction, AtariObservation
from gym_openenv.servers.atari.server.environment import AtariEnvironment, rom_id

gym.register_envs(ale_py)

GAMES = {"pong": "Pong", "breakout": "Breakout", "space_invaders": "SpaceInvaders"}


def _spaces(env: AtariEnvironment) -> tuple[gym.Space, gym.Space]:
    overrides = env.field_spaces()
    action = ModelSpec.from_model(AtariAction, overrides["action"]).space
    observation = ModelSpec.from_model(AtariObservation, overrides["observation"]).space
    return action, observation


@pytest.mark.parametrize("game", GAMES)
@pytest.mark.parametrize("obs_type", ["rgb", "grayscale", "ram"])
def test_spaces_are_those_of_v5(game: str, obs_type: str) -> None:
    reference = gym.make(f"ALE/{GAMES[game]}-v5", obs_type=obs_type)
    action, observation = _spaces(AtariEnvironment(game=game, obs_type=obs_type))
    assert action == reference.action_space
    assert observation == reference.observation_space
    reference.close()


def test_spaces_pong_defaults_and_full_action_space() -> None:
    action, observation = _spaces(AtariEnvironment())
    assert action == Discrete(6)
    assert observation == Box(0, 255, (210, 160, 3), np.uint8)
    action, _ = _spaces(AtariEnvironment(full_action_space=True))
    assert action == Discrete(18)


def test_observation_fields_outside_the_space_go_to_info() -> None:
    spec = ModelSpec.from_model(AtariObservation, AtariEnvironment().field_spaces()["observation"])
    assert spec.unwrapped
    assert [f.name for f in spec.info_fields] == ["screen_shape", "legal_actions", "lives", "episode_frame_number", "frame_number"]
    action = ModelSpec.from_model(AtariAction, AtariEnvironment().field_spaces()["action"])
    assert action.unwrapped and action.space == Discrete(6)  # upstream's extra action fields stay out


def _assert_same_step(ours: AtariObservation, theirs: tuple, where: str) -> None:
    screen, reward, terminated, truncated, info = theirs
    assert np.array_equal(ours.screen, screen), f"screen differs at {where}"
    assert ours.screen.dtype == screen.dtype and ours.screen.shape == screen.shape
    assert ours.reward == reward, f"reward differs at {where}"
    assert (ours.done and not ours.truncated) == terminated, f"terminated differs at {where}"
    assert ours.truncated == truncated, f"truncated differs at {where}"
    assert (ours.lives, ours.episode_frame_number, ours.frame_number) == (
        info["lives"],
        info["episode_frame_number"],
        info["frame_number"],
    ), f"info differs at {where}"


def _run_side_by_side(game: str, steps: int, seed: int, **kwargs) -> tuple[int, int]:
    """Step both envs with the same random actions; reset both without a seed
    at each episode end (RNG carried over) and once with a fresh seed midway.
    Returns (terminations, truncations) seen."""
    reference = gym.make(f"ALE/{GAMES[game]}-v5", **kwargs)
    ours = AtariEnvironment(game=game, **kwargs)
    actions = np.random.default_rng(seed)
    n = reference.action_space.n
    screen, info = reference.reset(seed=seed)
    _assert_same_step(ours.reset(seed=seed), (screen, None, False, False, info), "reset")
    ends = [0, 0]
    reseeded = False
    for t in range(steps):
        a = int(actions.integers(n))
        theirs = reference.step(a)
        _assert_same_step(ours.step(AtariAction(action_id=a)), theirs, f"step {t}")
        terminated, truncated = theirs[2], theirs[3]
        if terminated or truncated:
            ends[0] += terminated
            ends[1] += truncated
            reseed = None
            if t > steps // 2 and not reseeded:
                reseed, reseeded = seed + 1, True
            screen, info = reference.reset(seed=reseed)
            _assert_same_step(ours.reset(seed=reseed), (screen, None, False, False, info), f"reset after {t}")
    reference.close()
    ours.close()
    assert reseeded, "no episode ended in the second half: lengthen the run"
    return ends[0], ends[1]


@pytest.mark.parametrize("game", GAMES)
def test_bit_identical_to_v5_with_truncations(game: str) -> None:
    # 400 frames = 100 steps per episode: several truncations and unseeded resets.
    terminations, truncations = _run_side_by_side(game, 500, seed=7, max_num_frames_per_episode=400)
    assert truncations >= 4


def test_bit_identical_to_v5_with_terminations() -> None:
    # Random Breakout loses its 5 lives within a few hundred steps.
    terminations, _ = _run_side_by_side("breakout", 900, seed=3)
    assert terminations >= 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"obs_type": "grayscale"},
        {"obs_type": "ram", "full_action_space": True},
        {"frameskip": (2, 5), "repeat_action_probability": 0.0},
        {"mode": 1, "difficulty": 1},
    ],
)
def test_bit_identical_to_v5_with_other_settings(kwargs: dict) -> None:
    _run_side_by_side("pong", 200, seed=11, max_num_frames_per_episode=600, **kwargs)


def test_unseeded_first_reset_differs_between_instances() -> None:
    # Like gymnasium: no seed means fresh entropy, not a fixed default seed.
    # Sticky actions (p=0.25 per frame) make the paddles drift apart when the
    # action keeps changing.
    a, b = AtariEnvironment(game="breakout"), AtariEnvironment(game="breakout")
    a.reset(), b.reset()
    diverged = False
    for t in range(100):
        action = AtariAction(action_id=2 + t % 2)
        diverged |= not np.array_equal(a.step(action).screen, b.step(action).screen)
    assert diverged


def test_state_tracks_episode() -> None:
    env = AtariEnvironment(game="breakout")
    env.reset(seed=0, episode_id="ep-1")
    for _ in range(3):
        obs = env.step(AtariAction(action_id=0))
    state = env.state
    assert (state.episode_id, state.step_count, state.game_name) == ("ep-1", 3, "breakout")
    assert (state.lives, state.episode_frame_number) == (obs.lives, obs.episode_frame_number) == (5, 12)


def test_render_returns_the_rgb_screen() -> None:
    env = AtariEnvironment(game="pong", obs_type="ram", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(AtariAction(action_id=1))
    reference = gym.make("ALE/Pong-v5", obs_type="ram", render_mode="rgb_array")
    reference.reset(seed=0)
    reference.step(1)
    assert np.array_equal(env.render(), reference.render())
    with pytest.raises(ValueError, match="render_mode"):
        AtariEnvironment().render()


def test_metadata_names_the_actions() -> None:
    extra = AtariEnvironment(game="breakout").metadata().extra
    assert extra["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("pong", "pong"), ("Pong", "pong"), ("SpaceInvaders", "space_invaders"), ("ms-pacman", "ms_pacman")],
)
def test_game_names(name: str, expected: str) -> None:
    assert rom_id(name) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"game": "pongg"}, "Did you mean 'pong'"),
        ({"obs_type": "pixels"}, "obs_type"),
        ({"frameskip": 0}, "frameskip"),
        ({"frameskip": (5, 2)}, "frameskip"),
        ({"repeat_action_probability": 1.5}, "repeat_action_probability"),
        ({"mode": 99}, r"available modes \[0, 1\]"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_are_clear_value_errors(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AtariEnvironment(**kwargs)


@pytest.mark.parametrize("action_id", [-1, 6, 18])
def test_out_of_range_action_is_a_value_error(action_id: int) -> None:
    env = AtariEnvironment()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action_id"):
        env.step(AtariAction(action_id=action_id))


def test_step_batch_equals_stepping_one_by_one() -> None:
    batched = [AtariEnvironment(game="breakout") for _ in range(3)]
    single = [AtariEnvironment(game="breakout") for _ in range(3)]
    for i, (b, s) in enumerate(zip(batched, single)):
        b.reset(seed=i), s.reset(seed=i)
    for t in range(30):
        actions = [AtariAction(action_id=(t + i) % 4) for i in range(3)]
        for b, s in zip(AtariEnvironment.step_batch(batched, actions), [e.step(a) for e, a in zip(single, actions)]):
            assert np.array_equal(b.screen, s.screen) and (b.reward, b.done) == (s.reward, s.done)


# --- the server app, in process (OpenEnv's JSON protocol) ------------------------


def _json_screen(observation: dict) -> np.ndarray:
    """Upstream's wire form: ``screen`` is one flat list, ``screen_shape`` its shape."""
    screen = observation["screen"]
    assert all(isinstance(x, int) for x in screen[:10]), "screen must be a flat list of ints over JSON"
    return np.asarray(screen, np.uint8).reshape(observation["screen_shape"])


def test_app_schema_and_metadata_describe_the_game() -> None:
    with TestClient(create_app(AtariEnvironment, {"game": "breakout", "obs_type": "grayscale"})) as client:
        schema = client.get("/schema").json()
        assert ModelSpec.from_json_schema(schema["action"]).space == Discrete(4)
        assert ModelSpec.from_json_schema(schema["observation"]).space == Box(0, 255, (210, 160), np.uint8)
        assert client.get("/metadata").json()["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_app_websocket_session_matches_v5() -> None:
    reference = gym.make("ALE/SpaceInvaders-v5")
    with TestClient(create_app(AtariEnvironment, {"game": "space_invaders"})) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "reset", "data": {"seed": 5}})
            reply = ws.receive_json()["data"]
            screen, info = reference.reset(seed=5)
            assert np.array_equal(_json_screen(reply["observation"]), screen)
            for a in [1, 2, 3, 4, 5, 0] * 2:  # RGB over JSON is slow: a few steps suffice
                ws.send_json({"type": "step", "data": {"action_id": a}})
                reply = ws.receive_json()["data"]
                screen, reward, terminated, truncated, info = reference.step(a)
                assert np.array_equal(_json_screen(reply["observation"]), screen)
                assert (reply["reward"], reply["done"], reply["observation"]["lives"]) == (reward, terminated, info["lives"])
            ws.send_json({"type": "step", "data": {"action_id": 6}})
            error = ws.receive_json()
            assert error["type"] == "error" and "action_id" in error["data"]["message"]
    reference.close()


# --- end to end: gym.make("openenv/atari-v0") with a real server process ---------

ATARI_ID = "openenv/atari-v0"
ENVIRONMENT = "gym_openenv.servers.atari.server.environment:AtariEnvironment"


@pytest.fixture(scope="module")
def atari_id() -> str:
    """The id registry.yaml gives the Atari server (registered on import)."""
    assert ATARI_ID in gym.registry, "registry.yaml lacks the atari entry"
    assert gym.spec(ATARI_ID).kwargs["environment"] == ENVIRONMENT
    return ATARI_ID


def _run_remote_side_by_side(env: gym.Env, reference: gym.Env, steps: int, seed: int) -> int:
    """Same random actions through the server and through ALE v5; returns episode ends."""
    assert env.action_space == reference.action_space
    assert env.observation_space == reference.observation_space
    obs, info = env.reset(seed=seed)
    ref_obs, ref_info = reference.reset(seed=seed)
    assert np.array_equal(obs, ref_obs) and info["lives"] == ref_info["lives"]
    actions, ends = np.random.default_rng(seed), 0
    for t in range(steps):
        a = int(actions.integers(reference.action_space.n))
        obs, reward, terminated, truncated, info = env.step(a)
        ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = reference.step(a)
        assert np.array_equal(obs, ref_obs), f"observation differs at step {t}"
        assert obs.dtype == ref_obs.dtype and type(reward) is type(ref_reward) is float
        assert (reward, terminated, truncated) == (ref_reward, ref_terminated, ref_truncated), f"step {t}"
        assert {k: info[k] for k in ref_info} == ref_info, f"info differs at step {t}"
        if terminated or truncated:
            ends += 1
            obs, _ = env.reset()
            assert np.array_equal(obs, reference.reset()[0])
    return ends


def test_gym_make_is_bit_identical_to_v5_ram(atari_id: str) -> None:
    # RAM observations keep the JSON small, so many steps and several episode ends are cheap.
    kwargs = {"obs_type": "ram", "max_num_frames_per_episode": 200}
    env = gym.make(atari_id, game="breakout", **kwargs)
    reference = gym.make("ALE/Breakout-v5", **kwargs)
    try:
        assert _run_remote_side_by_side(env, reference, 160, seed=2) >= 3
    finally:
        env.close()
        reference.close()


def test_gym_make_is_bit_identical_to_v5_rgb(atari_id: str) -> None:
    env = gym.make(atari_id)
    reference = gym.make("ALE/Pong-v5")
    try:
        _run_remote_side_by_side(env, reference, 15, seed=4)
    finally:
        env.close()
        reference.close()


def test_gym_make_passes_check_env(atari_id: str) -> None:
    env = gym.make(atari_id, game="space_invaders", obs_type="grayscale")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_typed_client_plays_a_session() -> None:
    with AtariEnv.launch(game="breakout", obs_type="ram").sync() as client:
        first = client.reset(seed=0)
        assert (first.observation.lives, first.done) == (5, False)
        result = client.step(AtariAction(action_id=1))
        assert result.reward == 0.0 and not result.done and len(result.observation.screen) == 128
        state = client.state()
        assert (state.game_name, state.step_count, state.episode_frame_number) == ("breakout", 1, 4)


def test_make_vec_is_bit_identical_to_sync_vector_v5(atari_id: str) -> None:
    # Short episodes: autoresets (NEXT_STEP) happen on both sides several times.
    kwargs = {"max_num_frames_per_episode": 200}
    envs = gym.make_vec(atari_id, num_envs=4, game="breakout", **kwargs)
    reference = gym.vector.SyncVectorEnv([lambda: gym.make("ALE/Breakout-v5", **kwargs) for _ in range(4)])
    try:
        assert envs.single_action_space == reference.single_action_space
        assert envs.single_observation_space == reference.single_observation_space
        obs, _ = envs.reset(seed=0)
        assert np.array_equal(obs, reference.reset(seed=0)[0])
        actions = np.random.default_rng(0)
        for t in range(120):
            a = actions.integers(4, size=4)
            ours, theirs = envs.step(a), reference.step(a)
            for name, x, y in zip(["obs", "reward", "terminated", "truncated"], ours[:4], theirs[:4]):
                assert np.array_equal(x, y), f"{name} differs at step {t}"
            assert np.array_equal(ours[4]["lives"], theirs[4]["lives"])
            assert np.array_equal(ours[4]["episode_frame_number"], theirs[4]["episode_frame_number"])
    finally:
        envs.close()
        reference.close()


def test_frameskip_pair_may_arrive_as_a_json_list() -> None:
    # gym.make kwargs reach the server as JSON, where (2, 5) becomes [2, 5].
    as_list, as_tuple = AtariEnvironment(frameskip=[2, 5]), AtariEnvironment(frameskip=(2, 5))
    as_list.reset(seed=1), as_tuple.reset(seed=1)
    frames = {as_list.step(AtariAction(action_id=0)).episode_frame_number for _ in range(20)}
    assert frames == {as_tuple.step(AtariAction(action_id=0)).episode_frame_number for _ in range(20)}
    assert len({b - a for a, b in zip(sorted(frames), sorted(frames)[1:])}) > 1  # the skip really varies


def test_openenv_reference_client_plays_v5_exactly() -> None:
    # openenv-core's own client, unmodified, against our server: same trajectory as v5.
    reference = gym.make("ALE/Breakout-v5", obs_type="ram")
    with LocalProcessProvider(ENVIRONMENT, {"game": "breakout", "obs_type": "ram"}) as provider:

        async def play() -> list:
            async with GenericEnvClient(base_url=provider.base_url) as client:
                results = [await client.reset(seed=9)]
                for a in [1, 2, 3, 0] * 10:
                    results.append(await client.step({"action_id": a}))
                return results

        results = asyncio.run(play())
    first, steps = results[0], results[1:]
    assert np.array_equal(_json_screen(first.observation), reference.reset(seed=9)[0])
    for result, a in zip(steps, [1, 2, 3, 0] * 10):
        obs, reward, terminated, _, info = reference.step(a)
        assert np.array_equal(_json_screen(result.observation), obs)
        assert (result.reward, result.done, result.observation["lives"]) == (reward, terminated, info["lives"])
    reference.close()


def test_reset_without_episode_id_makes_one() -> None:
    env = AtariEnvironment()
    env.reset(seed=0)
    first = env.state.episode_id
    env.reset()
    assert first and env.state.episode_id and env.state.episode_id != first
