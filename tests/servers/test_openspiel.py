"""The OpenSpiel server against pyspiel itself.

Fidelity tests replay the same games twice: once through OpenSpielEnvironment,
once through a reference loop written against pyspiel alone with the seeding
scheme the server documents (``SeedSequence(seed).spawn(2)`` -> chance stream,
opponent stream), and require identical histories, tensors, masks and rewards.
"""

from __future__ import annotations

import json

import numpy as np
import pyspiel
import pytest
from fastapi.testclient import TestClient
from open_spiel.python.algorithms import mcts

from gym_openenv.server.app import create_app
from gym_openenv.spaces import ModelSpec
from gym_openenv.servers.openspiel.models import OpenSpielAction, OpenSpielObservation
from gym_openenv.servers.openspiel.server.environment import OpenSpielEnvironment

# --- the reference: pyspiel alone, same seeding scheme --------------------------


class Reference:
    """One game played with pyspiel directly: the expected side of every comparison."""

    def __init__(self, game: pyspiel.Game, seed: int, agent: int | None, opponent=None):
        chance_seq, opponent_seq = np.random.SeedSequence(seed).spawn(2)
        self.chance_rng = np.random.default_rng(chance_seq)
        self.opponent_rng = np.random.default_rng(opponent_seq)
        self.game = game
        self.agent = agent  # None: every seat is the client's (multi-agent)
        self.opponent = opponent or self.random_opponent
        self.state = game.new_initial_state()

    def random_opponent(self, state: pyspiel.State, player: int) -> int:
        legal = state.legal_actions(player)
        return legal[self.opponent_rng.integers(len(legal))]

    def settle(self) -> None:
        state = self.state
        while not state.is_terminal():
            if state.is_chance_node():
                outcomes, probs = zip(*state.chance_outcomes())
                p = np.asarray(probs, dtype=np.float64)
                state.apply_action(outcomes[self.chance_rng.choice(len(outcomes), p=p / p.sum())])
            elif self.agent is None or state.is_simultaneous_node() or state.current_player() == self.agent:
                return
            else:
                state.apply_action(self.opponent(state, state.current_player()))

    def tensor(self, player: int) -> np.ndarray:
        if self.game.get_type().provides_observation_tensor:
            values = self.state.observation_tensor(player)
        else:
            values = self.state.information_state_tensor(player)
        return np.asarray(values, dtype=np.float32)


def play_single_agent(game_name: str, seed: int, agent: int = 0, params=None, max_steps: int = 2000):
    """A full single-agent game against the random opponent: the reference picks
    the client's moves (from its own stream), the environment replays them."""
    game = pyspiel.load_game(game_name, params or {})
    ref = Reference(game, seed, agent)
    env = OpenSpielEnvironment(game=game_name, params=params, agent_player=agent, opponent="random")
    client_rng = np.random.default_rng(seed + 1000)

    ref.settle()
    obs = env.reset(seed=seed)
    steps = 0
    while True:
        assert_matches(obs, ref, agent)
        if ref.state.is_terminal():
            break
        before = ref.state.returns()[agent]
        legal = ref.state.legal_actions(agent)
        action = legal[client_rng.integers(len(legal))]
        if ref.state.is_simultaneous_node():
            joint = [action if p == agent else ref.random_opponent(ref.state, p) for p in range(game.num_players())]
            ref.state.apply_actions(joint)
        else:
            ref.state.apply_action(action)
        ref.settle()
        obs = env.step(OpenSpielAction(action_id=int(action)))
        assert obs.reward == pytest.approx(ref.state.returns()[agent] - before)
        steps += 1
        assert steps < max_steps, "game did not end"
    assert env.state.history == ref.state.history()
    assert obs.returns == pytest.approx(ref.state.returns())
    return steps


def assert_matches(obs: OpenSpielObservation, ref: Reference, seat: int) -> None:
    state = ref.state
    np.testing.assert_array_equal(obs.info_state.reshape(-1), ref.tensor(seat))
    assert obs.done == state.is_terminal()
    assert obs.current_player_id == seat
    legal = [] if state.is_terminal() else state.legal_actions(seat)
    assert obs.legal_actions == legal
    assert np.flatnonzero(obs.action_mask).tolist() == legal
    assert obs.error is None
    if ref.game.get_type().information == pyspiel.GameType.Information.PERFECT_INFORMATION:
        assert obs.text == str(state)


@pytest.mark.parametrize(
    "game_name, agent",
    [
        ("tic_tac_toe", 0),
        ("tic_tac_toe", 1),
        ("connect_four", 0),
        ("breakthrough", 1),
        ("kuhn_poker", 0),
        ("kuhn_poker", 1),
        ("leduc_poker", 1),
        ("2048", 0),
        ("backgammon", 0),
        ("catch", 0),
        ("cliff_walking", 0),
        ("goofspiel", 0),  # simultaneous moves and chance
        ("chess", 0),
    ],
)
def test_single_agent_matches_pyspiel(game_name, agent):
    for seed in (0, 7):
        assert play_single_agent(game_name, seed, agent) > 0


def test_game_params_reach_pyspiel():
    env = OpenSpielEnvironment(game="go", params={"board_size": 9})
    spaces = env.field_spaces()
    assert spaces["action"]["action_id"].n == 9 * 9 + 1
    assert spaces["observation"]["info_state"].shape == (4, 9, 9)
    assert play_single_agent("go", seed=3, params={"board_size": 5}) > 0


# --- multi-agent (self-play) -------------------------------------------------------


@pytest.mark.parametrize("game_name", ["tic_tac_toe", "leduc_poker", "backgammon", "goofspiel"])
def test_multi_agent_matches_pyspiel(game_name):
    game = pyspiel.load_game(game_name)
    seed = 5
    ref = Reference(game, seed, agent=None)
    env = OpenSpielEnvironment(game=game_name, multi_agent=True)
    client_rng = np.random.default_rng(11)

    ref.settle()
    obs = env.reset(seed=seed)
    while not ref.state.is_terminal():
        before = np.asarray(ref.state.returns())
        if ref.state.is_simultaneous_node():
            # Seats choose one at a time, in seat order; nothing moves until all have.
            joint = []
            for seat in range(game.num_players()):
                assert_matches(obs, ref, seat)
                legal = ref.state.legal_actions(seat)
                joint.append(int(legal[client_rng.integers(len(legal))]))
                obs = env.step(OpenSpielAction(action_id=joint[-1]))
                if seat < game.num_players() - 1:
                    assert obs.reward == 0.0 and not obs.done
            ref.state.apply_actions(joint)
            mover = game.num_players() - 1
        else:
            mover = ref.state.current_player()
            assert_matches(obs, ref, mover)
            legal = ref.state.legal_actions(mover)
            action = int(legal[client_rng.integers(len(legal))])
            obs = env.step(OpenSpielAction(action_id=action))
            ref.state.apply_action(action)
        ref.settle()
        rewards = np.asarray(ref.state.returns()) - before
        assert obs.rewards == pytest.approx(rewards.tolist())
        assert obs.reward == pytest.approx(rewards[mover])
    assert obs.done
    assert obs.current_player_id == mover  # the terminal observation is for the seat that just moved
    assert env.state.history == ref.state.history()
    assert obs.returns == pytest.approx(ref.state.returns())


def test_multi_agent_reward_vector_reaches_every_seat():
    # Kuhn poker: the seat that ends the hand sees its own reward; the other
    # seat's share is in `rewards` of the same step.
    env = OpenSpielEnvironment(game="kuhn_poker", multi_agent=True)
    obs = env.reset(seed=2)
    assert obs.current_player_id == 0
    obs = env.step(OpenSpielAction(action_id=1))  # bet
    assert obs.current_player_id == 1 and obs.reward == 0.0
    obs = env.step(OpenSpielAction(action_id=0))  # fold
    assert obs.done and obs.current_player_id == 1
    assert obs.rewards == [1.0, -1.0] and obs.reward == -1.0 and obs.returns == [1.0, -1.0]


# --- opponents ----------------------------------------------------------------------


def test_mcts_opponent_matches_pyspiel_bot_with_same_seeds():
    game = pyspiel.load_game("tic_tac_toe")
    seed, settings = 4, {"max_simulations": 50, "uct_c": 1.5, "n_rollouts": 2}
    opponent_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    evaluator = mcts.RandomRolloutEvaluator(
        n_rollouts=2, random_state=np.random.RandomState(opponent_rng.integers(2**32))
    )
    bot = mcts.MCTSBot(
        game, uct_c=1.5, max_simulations=50, evaluator=evaluator,
        random_state=np.random.RandomState(opponent_rng.integers(2**32)),
    )
    ref = Reference(game, seed, agent=0, opponent=lambda state, player: bot.step(state))
    env = OpenSpielEnvironment(game="tic_tac_toe", opponent="mcts", opponent_kwargs=settings)

    ref.settle()
    obs = env.reset(seed=seed)
    while not obs.done:
        action = ref.state.legal_actions()[-1]
        ref.state.apply_action(action)
        ref.settle()
        obs = env.step(OpenSpielAction(action_id=action))
    assert env.state.history == ref.state.history()
    assert obs.returns == ref.state.returns()


def test_mcts_beats_a_naive_client():
    env = OpenSpielEnvironment(game="tic_tac_toe", opponent="mcts", opponent_kwargs={"max_simulations": 200})
    wins = 0
    for seed in range(3):
        obs = env.reset(seed=seed)
        while not obs.done:
            obs = env.step(OpenSpielAction(action_id=obs.legal_actions[0]))
        wins += obs.returns[1] > 0
    assert wins == 3


def test_scripted_and_first_legal_opponents():
    env = OpenSpielEnvironment(game="connect_four", agent_player=1, opponent="script:3,3,3,3")
    obs = env.reset(seed=0)
    assert env.state.history == [3]
    for _ in range(3):
        obs = env.step(OpenSpielAction(action_id=0))
    assert env.state.history == [3, 0, 3, 0, 3, 0, 3] and obs.done and obs.returns == [1.0, -1.0]

    env = OpenSpielEnvironment(game="tic_tac_toe", opponent="first_legal")
    env.reset()
    env.step(OpenSpielAction(action_id=0))
    assert env.state.history == [0, 1]


def test_scripted_opponent_that_runs_out_says_so():
    env = OpenSpielEnvironment(game="tic_tac_toe", opponent="script:4")
    env.reset(seed=0)
    env.step(OpenSpielAction(action_id=0))
    with pytest.raises(ValueError, match="ran out of actions"):
        env.step(OpenSpielAction(action_id=1))


# --- seeding ------------------------------------------------------------------------


def run_episodes(env: OpenSpielEnvironment, seed: int, episodes: int) -> list[list[int]]:
    histories = []
    for i in range(episodes):
        obs = env.reset(seed=seed if i == 0 else None)
        while not obs.done:
            obs = env.step(OpenSpielAction(action_id=obs.legal_actions[0]))
        histories.append(env.state.history)
    return histories


def test_seed_reproduces_and_unseeded_resets_continue_the_streams():
    make = lambda: OpenSpielEnvironment(game="leduc_poker", agent_player=1)
    first, again = run_episodes(make(), 3, 4), run_episodes(make(), 3, 4)
    assert first == again
    assert len({tuple(h) for h in first}) > 1  # later episodes are not replays of the first
    assert run_episodes(make(), 4, 4) != first


# --- illegal actions ------------------------------------------------------------------


def test_illegal_action_reports_an_error_and_changes_nothing():
    env = OpenSpielEnvironment(game="tic_tac_toe", opponent="first_legal")
    env.reset(seed=0)
    played = env.step(OpenSpielAction(action_id=4))
    obs = env.step(OpenSpielAction(action_id=4))
    assert "illegal action 4" in obs.error and "legal actions: [1, 2" in obs.error
    assert obs.reward == 0.0 and not obs.done
    np.testing.assert_array_equal(obs.info_state, played.info_state)
    assert obs.legal_actions == played.legal_actions and env.state.history == [4, 0]
    obs = env.step(OpenSpielAction(action_id=8))  # the session goes on
    assert obs.error is None and env.state.history == [4, 0, 8, 1]


def test_illegal_action_penalty_ends_the_episode():
    env = OpenSpielEnvironment(game="tic_tac_toe", illegal_action="penalty", illegal_penalty=-5.0)
    env.reset(seed=0)
    obs = env.step(OpenSpielAction(action_id=99))
    assert obs.done and obs.reward == -5.0 and obs.returns == [-5.0, 0.0] and "illegal" in obs.error
    obs = env.step(OpenSpielAction(action_id=0))
    assert obs.done and obs.reward == 0.0 and "call reset()" in obs.error
    assert not env.reset(seed=1).done


def test_step_before_reset_is_a_clear_error():
    with pytest.raises(ValueError, match="reset"):
        OpenSpielEnvironment().step(OpenSpielAction(action_id=0))


# --- spaces and info ------------------------------------------------------------------


@pytest.mark.parametrize("game_name", ["catch", "kuhn_poker", "chess", "goofspiel", "cliff_walking"])
@pytest.mark.parametrize("multi_agent", [False, True])
def test_observations_lie_in_the_declared_spaces(game_name, multi_agent):
    env = OpenSpielEnvironment(game=game_name, multi_agent=multi_agent)
    overrides = env.field_spaces()
    obs_spec = ModelSpec.from_model(OpenSpielObservation, overrides["observation"])
    action_space = ModelSpec.from_model(OpenSpielAction, overrides["action"]).space
    game = pyspiel.load_game(game_name)
    assert action_space.n == game.num_distinct_actions()
    assert set(obs_spec.space.spaces) == {"info_state", "action_mask", "current_player_id"}
    assert [f.name for f in obs_spec.info_fields] == [
        "legal_actions", "game_phase", "opponent_last_action", "text", "rewards", "returns", "error"
    ]
    obs = env.reset(seed=0)
    for _ in range(40):
        value = {name: getattr(obs, name) for name in obs_spec.space.spaces}
        assert obs_spec.space.contains(value), value
        if obs.done:
            break
        obs = env.step(OpenSpielAction(action_id=obs.legal_actions[-1]))


def test_imperfect_information_text_hides_the_opponents_cards():
    env = OpenSpielEnvironment(game="kuhn_poker", agent_player=1)
    obs = env.reset(seed=0)
    game_state = pyspiel.load_game("kuhn_poker").new_initial_state()
    for action in env.state.history:
        game_state.apply_action(action)
    assert obs.text == game_state.observation_string(1) != str(game_state)
    # Perfect information: the whole board.
    assert OpenSpielEnvironment(game="tic_tac_toe").reset().text == "...\n...\n..."


def test_information_state_tensor_when_there_is_no_observation_tensor():
    game_type = pyspiel.load_game("battleship").get_type()
    assert not game_type.provides_observation_tensor and game_type.provides_information_state_tensor
    env = OpenSpielEnvironment(game="battleship")
    obs = env.reset(seed=0)
    assert env.metadata().extra["tensor"] == "information_state"
    assert obs.info_state.shape == tuple(pyspiel.load_game("battleship").information_state_tensor_shape())


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"game": "tic_tac_to"}, "game"),
        ({"game": "go", "params": {"bord_size": 9}}, "params"),
        ({"game": "mfg_crowd_modelling"}, "game"),  # mean-field dynamics
        ({"game": "cribbage"}, "game"),  # no tensor at all
        ({"game": "crossword"}, "game"),  # declares a tensor it does not implement
        ({"game": "kuhn_poker", "agent_player": 2}, "agent_player"),
        ({"opponent": "minimax"}, "opponent"),
        ({"opponent": "script:a,b"}, "opponent"),
        ({"opponent": "random", "opponent_kwargs": {"depth": 2}}, "opponent_kwargs"),
        ({"game": "tic_tac_toe", "opponent": "mcts", "opponent_kwargs": {"depth": 2}}, "opponent_kwargs"),
        ({"game": "goofspiel", "opponent": "mcts"}, "mcts"),
        ({"illegal_action": "ignore"}, "illegal_action"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        OpenSpielEnvironment(**kwargs)


# --- the server app, in process ---------------------------------------------------------


def test_app_schema_describes_the_game():
    with TestClient(create_app(OpenSpielEnvironment, {"game": "go", "params": {"board_size": 9}})) as client:
        schema = client.get("/schema").json()
        metadata = client.get("/metadata").json()
    spec = ModelSpec.from_json_schema(schema["observation"])
    assert spec.space["info_state"].shape == (4, 9, 9)
    assert spec.space["action_mask"].shape == (82,)
    assert spec.space["current_player_id"].n == 2
    assert ModelSpec.from_json_schema(schema["action"]).space.n == 82
    assert metadata["game"] == "go(board_size=9)" and metadata["num_players"] == 2


def test_app_websocket_session_replays_the_in_process_game():
    kwargs = {"game": "leduc_poker", "agent_player": 1}
    env = OpenSpielEnvironment(**kwargs)
    with TestClient(create_app(OpenSpielEnvironment, kwargs)) as client, client.websocket_connect("/ws") as ws:

        def send(kind, data):
            ws.send_text(json.dumps({"type": kind, "data": data}))
            return json.loads(ws.receive_text())

        def send_state():
            ws.send_text(json.dumps({"type": "state"}))
            return json.loads(ws.receive_text())["data"]

        remote = send("reset", {"seed": 9})["data"]
        local = env.reset(seed=9)
        while True:
            assert remote["observation"]["info_state"] == local.info_state.reshape(-1).tolist()  # flat, as upstream sends it
            assert remote["observation"]["legal_actions"] == local.legal_actions
            assert remote["reward"] == local.reward and remote["done"] == local.done
            if local.done:
                break
            action = local.legal_actions[-1]
            remote = send("step", {"action_id": action})["data"]
            local = env.step(OpenSpielAction(action_id=action))
        assert send_state()["history"] == env.state.history
        illegal = send("step", {"action_id": 0})
        assert illegal["type"] == "observation" and "episode is over" in illegal["data"]["observation"]["error"]


# --- through gymnasium (real server processes) --------------------------------------------

GYM_ID = "openenv/openspiel-v0"


# Tensor bounds are unknown to pyspiel, so the Box is unbounded (as in Shimmy);
# check_env warns about that and nothing else.
@pytest.mark.filterwarnings("ignore:.*observation space (minimum|maximum) value is")
@pytest.mark.parametrize(
    "kwargs",
    [{"game": "connect_four"}, {"game": "kuhn_poker", "multi_agent": True}, {"game": "goofspiel", "agent_player": 1}],
)
def test_check_env_through_gym_make(kwargs):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import gym_openenv  # noqa: F401

    env = gym.make(GYM_ID, **kwargs)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_gym_make_replays_the_in_process_game_and_survives_illegal_actions():
    import gymnasium as gym

    import gym_openenv  # noqa: F401

    kwargs = {"game": "backgammon", "opponent": "first_legal"}
    local = OpenSpielEnvironment(**kwargs)
    env = gym.make(GYM_ID, **kwargs)
    try:
        expected = local.reset(seed=21)
        obs, info = env.reset(seed=21)
        assert env.action_space.n == pyspiel.load_game("backgammon").num_distinct_actions()
        for _ in range(30):
            np.testing.assert_array_equal(obs["info_state"], expected.info_state)
            np.testing.assert_array_equal(obs["action_mask"], expected.action_mask)
            assert info["legal_actions"] == expected.legal_actions and info["text"] == expected.text
            if expected.done:
                break
            illegal = int(np.flatnonzero(obs["action_mask"] == 0)[0])
            obs, reward, terminated, truncated, info = env.step(illegal)
            assert "illegal action" in info["error"] and reward == 0.0 and not terminated
            action = expected.legal_actions[len(expected.legal_actions) // 2]
            expected = local.step(OpenSpielAction(action_id=action))
            obs, reward, terminated, truncated, info = env.step(action)
            assert reward == expected.reward and terminated == expected.done and not truncated
            assert info["error"] is None
    finally:
        env.close()


def test_openenv_client_and_typed_client_play_a_served_game():
    import asyncio

    from openenv.core.generic_client import GenericEnvClient

    from gym_openenv.providers import LocalProcessProvider
    from gym_openenv.servers.openspiel.client import OpenSpielEnv

    kwargs = {"game": "tic_tac_toe", "opponent": "first_legal"}
    with LocalProcessProvider("gym_openenv.servers.openspiel.server.environment:OpenSpielEnvironment", kwargs) as provider:

        async def with_openenv():
            async with GenericEnvClient(base_url=provider.base_url) as client:
                await client.reset(seed=0)
                played = await client.step({"action_id": 4})
                illegal = await client.step({"action_id": 4})
                return played, illegal, await client.state()

        played, illegal, state = asyncio.run(with_openenv())
        assert played.observation["text"] == "o..\n.x.\n..." and played.done is False
        assert "illegal action 4" in illegal.observation["error"]
        assert state["history"] == [4, 0] and state["step_count"] == 2

        with OpenSpielEnv(provider.base_url).sync() as env:
            env.reset(seed=0)
            result = env.step(OpenSpielAction(action_id=4))
            assert isinstance(result.observation, OpenSpielObservation)
            assert result.observation.legal_actions == [1, 2, 3, 5, 6, 7, 8]
            assert env.state().history == [4, 0]


def test_make_vec_batches_masks_and_replays_each_seeded_game():
    import gymnasium as gym

    import gym_openenv  # noqa: F401

    num_envs, seed, kwargs = 3, 40, {"game": "connect_four", "opponent": "random"}
    locals_ = [OpenSpielEnvironment(**kwargs) for _ in range(num_envs)]
    expected = [env.reset(seed=seed + i) for i, env in enumerate(locals_)]
    envs = gym.make_vec(GYM_ID, num_envs=num_envs, **kwargs)
    try:
        assert envs.observation_space["action_mask"] == gym.spaces.Box(0, 1, (num_envs, 7), np.int8)
        obs, _ = envs.reset(seed=seed)
        rng = np.random.default_rng(0)
        for _ in range(60):  # long enough for autoresets (NEXT_STEP)
            np.testing.assert_array_equal(obs["action_mask"], np.stack([e.action_mask for e in expected]))
            np.testing.assert_array_equal(obs["info_state"], np.stack([e.info_state for e in expected]))
            actions = (rng.random((num_envs, 7)) * obs["action_mask"]).argmax(axis=1)
            after = []
            for env, previous, action in zip(locals_, expected, actions):
                after.append(env.reset() if previous.done else env.step(OpenSpielAction(action_id=int(action))))
            obs, reward, terminated, _, _ = envs.step(actions)
            stepped = [not previous.done for previous in expected]
            np.testing.assert_array_equal(reward[stepped], [e.reward for e, s in zip(after, stepped) if s])
            np.testing.assert_array_equal(terminated, [e.done and s for e, s in zip(after, stepped)])
            expected = after
    finally:
        envs.close()


def test_benchmark_script_runs_with_a_tiny_budget(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "bench"
    subprocess.run(
        [sys.executable, "benchmarks/openspiel_connect_four.py", "--steps", "400", "--rounds", "1", "--num-envs", "2", "--out", str(out)],
        cwd=root, check=True, capture_output=True, timeout=300,
    )
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["steps_per_second"]) == {"gym_openenv", "in_process", "pyspiel", "shimmy"}
    assert all(rate > 0 for rate in report["steps_per_second"].values())
    assert out.with_suffix(".png").stat().st_size > 0
