"""Policies that play the seats the client does not control.

An opponent is chosen by a short spec string (the server's ``opponent``
argument) and drawn from a seeded generator, so a game replays exactly for the
same ``reset(seed=...)``:

* ``"random"``: uniform over the legal actions;
* ``"first_legal"``: the smallest legal action id;
* ``"mcts"``: open_spiel's UCT search with random rollouts (sequential games
  with terminal rewards); ``opponent_kwargs`` may set ``max_simulations``,
  ``uct_c``, ``n_rollouts`` and ``solve``;
* ``"script:3,3,4"``: these action ids in order, one per opponent move,
  restarting every episode (for tests and reproducible demos).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts

__all__ = ["Opponent", "make_opponent"]

_MCTS_DEFAULTS = {"max_simulations": 100, "uct_c": 2.0, "n_rollouts": 1, "solve": True}


class Opponent(Protocol):
    def start_episode(self) -> None:
        """Called at every reset."""

    def choose(self, state: pyspiel.State, player: int) -> int:
        """The action ``player`` plays in ``state`` (one of ``state.legal_actions(player)``)."""


class RandomOpponent:
    def __init__(self, rng: np.random.Generator):
        self._rng = rng

    def start_episode(self) -> None:
        pass

    def choose(self, state: pyspiel.State, player: int) -> int:
        legal = state.legal_actions(player)
        return legal[int(self._rng.integers(len(legal)))]


class FirstLegalOpponent:
    def start_episode(self) -> None:
        pass

    def choose(self, state: pyspiel.State, player: int) -> int:
        return state.legal_actions(player)[0]


class ScriptedOpponent:
    def __init__(self, actions: list[int], spec: str):
        self._actions = actions
        self._spec = spec
        self._next = 0

    def start_episode(self) -> None:
        self._next = 0

    def choose(self, state: pyspiel.State, player: int) -> int:
        if self._next >= len(self._actions):
            raise ValueError(f"opponent {self._spec!r} ran out of actions after {len(self._actions)} moves")
        action = self._actions[self._next]
        if action not in state.legal_actions(player):
            raise ValueError(
                f"opponent {self._spec!r}: move {self._next} ({action}) is illegal for player {player}; "
                f"legal: {state.legal_actions(player)}"
            )
        self._next += 1
        return action


class MCTSOpponent:
    def __init__(self, game: pyspiel.Game, rng: np.random.Generator, settings: Mapping[str, Any]):
        # open_spiel's MCTS draws from legacy RandomState objects; seed them from our stream.
        evaluator = mcts.RandomRolloutEvaluator(
            n_rollouts=int(settings["n_rollouts"]), random_state=np.random.RandomState(rng.integers(2**32))
        )
        self._bot = mcts.MCTSBot(
            game,
            uct_c=float(settings["uct_c"]),
            max_simulations=int(settings["max_simulations"]),
            evaluator=evaluator,
            solve=bool(settings["solve"]),
            random_state=np.random.RandomState(rng.integers(2**32)),
        )

    def start_episode(self) -> None:
        pass

    def choose(self, state: pyspiel.State, player: int) -> int:
        return int(self._bot.step(state))


def make_opponent(
    spec: str, game: pyspiel.Game, kwargs: Mapping[str, Any] | None, rng: np.random.Generator
) -> Opponent:
    """Build the opponent named by ``spec``; its randomness comes from ``rng``.

    Raises:
        ValueError: naming ``opponent`` or ``opponent_kwargs`` when the spec is unknown,
            malformed, or unsuitable for the game.
    """
    kwargs = dict(kwargs or {})
    if spec == "mcts":
        unknown = sorted(set(kwargs) - set(_MCTS_DEFAULTS))
        if unknown:
            raise ValueError(f"opponent_kwargs: unknown key(s) {unknown} for 'mcts'; known: {sorted(_MCTS_DEFAULTS)}")
        game_type = game.get_type()
        if game_type.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
            raise ValueError(f"opponent='mcts' needs a sequential game; {game} has simultaneous moves")
        if game_type.reward_model != pyspiel.GameType.RewardModel.TERMINAL:
            raise ValueError(f"opponent='mcts' needs terminal rewards; {game} rewards every step")
        return MCTSOpponent(game, rng, {**_MCTS_DEFAULTS, **kwargs})
    if kwargs:
        raise ValueError(f"opponent_kwargs: opponent {spec!r} takes no arguments, got {sorted(kwargs)}")
    if spec == "random":
        return RandomOpponent(rng)
    if spec == "first_legal":
        return FirstLegalOpponent()
    if spec.startswith("script:"):
        try:
            actions = [int(a) for a in spec.removeprefix("script:").split(",") if a.strip()]
        except ValueError:
            raise ValueError(f"opponent: {spec!r} must be 'script:' then comma-separated action ids") from None
        return ScriptedOpponent(actions, spec)
    raise ValueError(f"opponent: unknown {spec!r}; use 'random', 'first_legal', 'mcts' or 'script:<a>,<b>,...'")
