"""Any OpenSpiel game as an OpenEnv environment.

Two ways to play:

* **single-agent** (default): the client plays ``agent_player``; every other
  seat is played inside the server by the ``opponent`` policy, and chance
  events are sampled. Each step returns at the client's next turn (or at the
  end), with the client's reward summed over everything that happened since.
* **multi-agent** (``multi_agent=True``, self-play): the client plays every
  seat. Each step moves the seat named by the last observation's
  ``current_player_id``; ``reward`` is that seat's reward for the transition and
  ``rewards`` (in ``info``) has every seat's. Simultaneous moves are collected
  one seat at a time, in seat order, and applied together once all are in.

Seeding (so a game replays exactly, and so tests can replay it with pyspiel
alone): ``reset(seed=s)`` splits ``np.random.SeedSequence(s).spawn(2)`` into a
chance stream and an opponent stream, each an ``np.random.default_rng``. A
chance node plays ``outcomes[chance_rng.choice(len(outcomes), p=probs)]``
(probabilities as the game gives them, renormalized); the random opponent
plays ``legal[opponent_rng.integers(len(legal))]``. ``reset()`` without a seed
continues both streams.

Example:
    >>> from gym_openenv.servers.openspiel.models import OpenSpielAction
    >>> env = OpenSpielEnvironment(game="tic_tac_toe", opponent="first_legal")
    >>> obs = env.reset(seed=0)
    >>> obs.legal_actions
    [0, 1, 2, 3, 4, 5, 6, 7, 8]
    >>> obs = env.step(OpenSpielAction(action_id=4))
    >>> print(obs.text)
    o..
    .x.
    ...
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pyspiel
from gymnasium import spaces

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces
from gym_openenv.servers.openspiel.models import (
    OpenSpielAction,
    OpenSpielObservation,
    OpenSpielState,
)
from gym_openenv.servers.openspiel.server.opponents import Opponent, make_opponent

__all__ = ["OpenSpielEnvironment"]

_Dynamics = pyspiel.GameType.Dynamics
_ILLEGAL_ACTION_MODES = ("error", "penalty")


def load_game(name: str, params: Mapping[str, Any] | None) -> pyspiel.Game:
    """``pyspiel.load_game`` with errors that name the argument at fault."""
    known = pyspiel.registered_names()
    base = name.split("(", 1)[0]
    if base not in known:  # checked first: pyspiel would print every game name to stderr
        close = difflib.get_close_matches(base, known, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"game: unknown OpenSpiel game {name!r}.{hint}")
    try:
        return pyspiel.load_game(name, dict(params or {}))
    except pyspiel.SpielError as e:
        raise ValueError(f"params: OpenSpiel rejected {dict(params or {})} for {name!r}: {e}") from None


class OpenSpielEnvironment(Environment[OpenSpielAction, OpenSpielObservation, OpenSpielState]):
    """An OpenSpiel game; one seat (or every seat) played by the client.

    Args:
        game: OpenSpiel game name (``"connect_four"``) or full game string
            (``"go(board_size=9)"``).
        params: game parameters, e.g. ``{"board_size": 9}``.
        agent_player: the client's seat in single-agent mode.
        opponent: policy for the other seats: ``"random"``, ``"first_legal"``,
            ``"mcts"`` or ``"script:<a>,<b>,..."`` (see ``opponents``).
        opponent_kwargs: settings for the opponent (``mcts``: ``max_simulations``,
            ``uct_c``, ``n_rollouts``, ``solve``).
        illegal_action: ``"error"``: an illegal action changes nothing, the
            observation repeats with ``error`` set and reward 0; ``"penalty"``:
            the episode ends with ``illegal_penalty`` for the offending seat.
        illegal_penalty: reward for an illegal action under ``"penalty"``.
        multi_agent: the client plays every seat (self-play); ``agent_player``
            and ``opponent`` are unused.
    """

    action_type = OpenSpielAction
    observation_type = OpenSpielObservation
    state_type = OpenSpielState

    def __init__(
        self,
        game: str = "catch",
        params: Mapping[str, Any] | None = None,
        agent_player: int = 0,
        opponent: str = "random",
        opponent_kwargs: Mapping[str, Any] | None = None,
        illegal_action: str = "error",
        illegal_penalty: float = -1.0,
        multi_agent: bool = False,
    ):
        self._game = load_game(game, params)
        game_type = self._game.get_type()
        if game_type.dynamics not in (_Dynamics.SEQUENTIAL, _Dynamics.SIMULTANEOUS):
            raise ValueError(f"game: {game!r} has {game_type.dynamics} dynamics; only sequential or simultaneous games are supported")
        self._num_players = self._game.num_players()
        self._num_actions = self._game.num_distinct_actions()
        if not multi_agent and not 0 <= agent_player < self._num_players:
            raise ValueError(f"agent_player: {agent_player} is not a seat of {game!r} (players 0..{self._num_players - 1})")
        if illegal_action not in _ILLEGAL_ACTION_MODES:
            raise ValueError(f"illegal_action: {illegal_action!r} is not one of {_ILLEGAL_ACTION_MODES}")

        # The tensor: the seat's observation, or its information state when the
        # game has no observation tensor (both hide what the seat cannot see).
        if game_type.provides_observation_tensor:
            self._tensor_kind = "observation"
        elif game_type.provides_information_state_tensor:
            self._tensor_kind = "information_state"
        else:
            raise ValueError(f"game: {game!r} provides neither an observation nor an information state tensor")
        try:
            shape = getattr(self._game, f"{self._tensor_kind}_tensor_shape")()
        except pyspiel.SpielError as e:  # a game may declare a tensor it does not implement
            raise ValueError(f"game: {game!r} declares an {self._tensor_kind} tensor but fails to give its shape: {e}") from None
        self._tensor_shape = tuple(shape)
        # str(state) shows hidden information (every hand in poker); imperfect-
        # information games describe the seat's own view instead.
        self._perfect_information = game_type.information == pyspiel.GameType.Information.PERFECT_INFORMATION
        # Prefer the string of the same kind as the tensor.
        provided = {
            "observation": game_type.provides_observation_string,
            "information_state": game_type.provides_information_state_string,
        }
        preference = sorted(provided, key=lambda kind: kind != self._tensor_kind)
        self._seat_text = next((kind for kind in preference if provided[kind]), None)

        self._agent = agent_player
        self._multi_agent = bool(multi_agent)
        self._opponent_spec = opponent
        self._opponent_kwargs = dict(opponent_kwargs or {})
        self._illegal_action = illegal_action
        self._illegal_penalty = float(illegal_penalty)

        self._chance_rng: np.random.Generator
        self._opponent: Opponent | None
        self._seed(None)  # also validates the opponent spec against the game

        self._state: pyspiel.State | None = None
        self._session = self._new_session(None)
        self._opponent_last_action: int | None = None
        self._pending: dict[int, int] = {}  # simultaneous moves collected so far (multi-agent)
        self._penalties = [0.0] * self._num_players  # illegal-action penalties this episode
        self._forfeited = False
        self._last_mover = 0

    # --- Environment interface -------------------------------------------------

    def field_spaces(self) -> FieldSpaces:
        return {
            "action": {"action_id": spaces.Discrete(self._num_actions)},
            "observation": {
                "info_state": spaces.Box(-np.inf, np.inf, self._tensor_shape, np.float32),
                "action_mask": spaces.Box(0, 1, (self._num_actions,), np.int8),
                "current_player_id": spaces.Discrete(self._num_players),
            },
        }

    def reset(self, seed: int | None = None, episode_id: str | None = None) -> OpenSpielObservation:
        if seed is not None:
            self._seed(seed)
        if self._opponent is not None:
            self._opponent.start_episode()
        self._state = self._game.new_initial_state()
        self._session = self._new_session(episode_id)
        self._opponent_last_action = None
        self._pending.clear()
        self._penalties = [0.0] * self._num_players
        self._forfeited = False
        self._last_mover = 0
        self._advance()
        seat = self._to_move()
        # Rewards the opponents and chance earned before the client's first move count too.
        returns = self._returns()
        return self._observe(seat if seat is not None else 0, None, returns, returns)

    def step(self, action: OpenSpielAction) -> OpenSpielObservation:
        if self._state is None:
            raise ValueError("step: call reset() before the first step")
        self._session.step_count += 1
        seat = self._to_move()
        if seat is None:
            return self._observe(
                self._last_mover, 0.0, [0.0] * self._num_players, error="the episode is over; call reset()"
            )
        action_id = int(action.action_id)
        legal = self._state.legal_actions(seat)
        if action_id not in legal:
            return self._illegal(seat, action_id, legal)

        before = self._returns()
        self._play(seat, action_id)
        self._advance()
        self._last_mover = seat
        returns = self._returns()
        rewards = [after - prior for after, prior in zip(returns, before)]
        following = self._to_move()
        return self._observe(seat if following is None else following, rewards[seat], rewards, returns)

    @property
    def state(self) -> OpenSpielState:
        if self._state is not None:
            self._session.current_player_id = int(self._state.current_player())
            self._session.history = list(self._state.history())
            self._session.returns = self._returns()
            self._session.is_terminal = self._is_over()
        return self._session

    def metadata(self) -> EnvironmentMetadata:
        game_type = self._game.get_type()
        return replace(
            super().metadata(),
            documentation_url="https://openspiel.readthedocs.io",
            extra={
                "game": str(self._game),
                "game_long_name": game_type.long_name,
                "num_players": self._num_players,
                "num_distinct_actions": self._num_actions,
                "tensor": self._tensor_kind,
                "multi_agent": self._multi_agent,
                "agent_player": None if self._multi_agent else self._agent,
                "opponent": None if self._multi_agent else self._opponent_spec,
            },
        )

    # --- game flow -------------------------------------------------------------

    def _new_session(self, episode_id: str | None) -> OpenSpielState:
        return OpenSpielState(
            episode_id=episode_id,
            game_name=self._game.get_type().short_name,
            game_params=dict(self._game.get_parameters()),
            num_players=self._num_players,
            agent_player=None if self._multi_agent else self._agent,
            opponent_policy=None if self._multi_agent else self._opponent_spec,
        )

    def _seed(self, seed: int | None) -> None:
        chance_seq, opponent_seq = np.random.SeedSequence(seed).spawn(2)
        self._chance_rng = np.random.default_rng(chance_seq)
        self._opponent = (
            None
            if self._multi_agent
            else make_opponent(self._opponent_spec, self._game, self._opponent_kwargs, np.random.default_rng(opponent_seq))
        )

    def _advance(self) -> None:
        """Play chance events (and, in single-agent mode, the opponents) until
        the client must act or the game ends."""
        state = self._state
        while not state.is_terminal():
            if state.is_chance_node():
                outcomes, probs = zip(*state.chance_outcomes())
                p = np.asarray(probs, dtype=np.float64)
                state.apply_action(outcomes[self._chance_rng.choice(len(outcomes), p=p / p.sum())])
            elif self._multi_agent or state.is_simultaneous_node():
                return  # single-agent: the opponents answer a simultaneous move in _play
            elif state.current_player() == self._agent:
                return
            else:
                player = state.current_player()
                self._opponent_last_action = self._opponent.choose(state, player)
                state.apply_action(self._opponent_last_action)

    def _play(self, seat: int, action_id: int) -> None:
        state = self._state
        if not state.is_simultaneous_node():
            state.apply_action(action_id)
        elif self._multi_agent:
            self._pending[seat] = action_id
            if self._to_move() is None:  # every seat has chosen
                state.apply_actions([self._pending[p] for p in range(self._num_players)])
                self._pending.clear()
        else:
            joint = [action_id if p == seat else self._opponent.choose(state, p) for p in range(self._num_players)]
            self._opponent_last_action = next(a for p, a in reversed(list(enumerate(joint))) if p != seat)
            state.apply_actions(joint)

    def _to_move(self) -> int | None:
        """The seat the client plays next; None once the game is over (or, for
        a simultaneous move in multi-agent mode, once every seat has chosen)."""
        state = self._state
        if self._is_over():
            return None
        if not state.is_simultaneous_node():
            return state.current_player()
        if not self._multi_agent:
            return self._agent
        waiting = [p for p in range(self._num_players) if p not in self._pending and state.legal_actions(p)]
        return waiting[0] if waiting else None

    def _illegal(self, seat: int, action_id: int, legal: list[int]) -> OpenSpielObservation:
        error = f"illegal action {action_id} for player {seat}; legal actions: {legal}"
        rewards = [0.0] * self._num_players
        if self._illegal_action == "penalty":
            self._forfeited = True
            self._last_mover = seat
            self._penalties[seat] += self._illegal_penalty
            rewards[seat] = self._illegal_penalty
            return self._observe(seat, self._illegal_penalty, rewards, error=error)
        return self._observe(seat, 0.0, rewards, error=error)

    def _is_over(self) -> bool:
        return self._forfeited or self._state.is_terminal()

    def _returns(self) -> list[float]:
        return [r + p for r, p in zip(self._state.returns(), self._penalties)]

    # --- observations ----------------------------------------------------------

    def _observe(
        self,
        seat: int,
        reward: float | None,
        rewards: list[float],
        returns: list[float] | None = None,
        error: str | None = None,
    ) -> OpenSpielObservation:
        """What ``seat`` sees now; ``returns`` if already computed."""
        state = self._state
        done = self._is_over()
        if self._tensor_kind == "observation":
            tensor = state.observation_tensor(seat)
        else:
            tensor = state.information_state_tensor(seat)
        legal = [] if done else state.legal_actions(seat)
        mask = np.zeros(self._num_actions, dtype=np.int8)
        mask[legal] = 1
        return OpenSpielObservation(
            info_state=np.asarray(tensor, dtype=np.float32).reshape(self._tensor_shape),
            action_mask=mask,
            current_player_id=seat,
            legal_actions=list(legal),
            game_phase="terminal" if done else "playing" if self._session.step_count else "initial",
            opponent_last_action=self._opponent_last_action,
            text=self._text(seat),
            rewards=rewards,
            returns=self._returns() if returns is None else returns,
            error=error,
            reward=reward,
            done=done,
        )

    def _text(self, seat: int) -> str | None:
        if self._perfect_information:
            return str(self._state)
        if self._seat_text == "observation":
            return self._state.observation_string(seat)
        if self._seat_text == "information_state":
            return self._state.information_state_string(seat)
        return None
