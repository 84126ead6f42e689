"""The OpenSpiel server against pyspiel itself.

Fidelity tests replay the same games twice: once through OpenSpielEnvironment,
once through a reference loop written against pyspiel alone with the seeding
scheme the server documents (``SeedSequence(seed).spawn(2)`` -> chance stream,
opponent stream), and require identical histories, tensors, masks and rewards.
"""

from __future__ import annotations

import numpy as np
import pyspiel
import pytest
from open_spiel.python.algorithms import mcts

from gym_openenv.spaces import ModelSpec
from servers.openspiel.models import OpenSpielAction, OpenSpielObservation
from servers.openspiel.server.environment import OpenSpielEnvironment

# --- the reference: pyspiel alone, same seeding scheme --------------------------


class Reference:
    """One game played with pyspiel directly, recording what each step's
    observation must contain."""

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
    np.testing.assert_array_equal(obs.observation.reshape(-1), ref.tensor(seat))
    assert obs.done == state.is_terminal()
    assert obs.current_player == seat
    legal = [] if state.is_terminal() else state.legal_actions(seat)
    assert obs.legal_actions == legal
    assert np.flatnonzero(obs.action_mask).tolist() == legal
    assert obs.error is None


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
    assert spaces["observation"]["observation"].shape == (4, 9, 9)
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
    assert obs.current_player == mover  # the terminal observation is for the seat that just moved
    assert env.state.history == ref.state.history()
    assert obs.returns == pytest.approx(ref.state.returns())
