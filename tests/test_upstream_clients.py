"""Clients written for upstream OpenEnv's environments play our servers.

Our servers use upstream's model field names where upstream has the same
environment, so a client that only knows upstream's models works against them
over OpenEnv's JSON protocol. Two kinds of client, both openenv-core's own:

* ``GenericEnvClient`` with plain dicts, as a user without our package would;
* a typed ``EnvClient`` whose pydantic models declare upstream's field names
  and types (written here with openenv-core's ``Action``/``Observation``: the
  upstream environments are not installable packages). Parsing validates
  every field, so a value of the wrong shape (a nested screen where upstream
  sends one flat list) fails the test.

Meanwhile the gym ids keep their spaces (``Discrete`` actions, the frame as a
``Box``), checked here through ``openenv/remote-v0`` on the same servers.
"""

from __future__ import annotations

from typing import Any, Literal

import ale_py
import gymnasium as gym
import numpy as np
import pytest
from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server.interfaces import Message
from openenv.core.env_server.types import Action, Observation, State
from openenv.core.generic_client import GenericEnvClient
from pydantic import Field

import gym_openenv  # noqa: F401  (registers openenv/*)
from gym_openenv.providers import LocalProcessProvider
from gym_openenv.servers.chat.server.environment import ChatEnvironment
from gym_openenv.servers.chat.server.tokenizer import ChatTokenizer
from gym_openenv.servers.openspiel.models import OpenSpielAction
from gym_openenv.servers.openspiel.server.environment import OpenSpielEnvironment

gym.register_envs(ale_py)

SERVERS = "gym_openenv.servers"


def serve(name: str, cls: str, **kwargs: Any) -> LocalProcessProvider:
    return LocalProcessProvider(f"{SERVERS}.{name}.server.environment:{cls}", kwargs)


class TypedClient(EnvClient):
    """An openenv-core client for pydantic models, parsing as upstream's typed clients do:
    each field the model declares is read from the observation and validated."""

    observation_model: type[Observation]

    def _step_payload(self, action: Action) -> dict[str, Any]:
        return action.model_dump(exclude={"metadata"})

    def _parse_result(self, payload: dict[str, Any]) -> StepResult:
        fields = payload.get("observation", {})
        declared = {k: fields[k] for k in self.observation_model.model_fields if k in fields}
        observation = self.observation_model(**declared, done=payload.get("done", False), reward=payload.get("reward"))
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload.get("done", False))

    def _parse_state(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload


# --- Atari ------------------------------------------------------------------------------


class UpstreamAtariAction(Action):
    action_id: int
    game_name: str = "pong"
    obs_type: Literal["rgb", "grayscale", "ram"] = "rgb"
    full_action_space: bool = False


class UpstreamAtariObservation(Observation):
    screen: list[int]
    screen_shape: list[int]
    legal_actions: list[int]
    lives: int = 0
    episode_frame_number: int = 0
    frame_number: int = 0


class UpstreamAtariClient(TypedClient):
    observation_model = UpstreamAtariObservation


@pytest.fixture(scope="module")
def breakout_server():
    with serve("atari", "AtariEnvironment", game="breakout") as provider:
        yield provider.base_url


def test_generic_client_plays_atari_with_upstream_fields(breakout_server):
    reference = gym.make("ALE/Breakout-v5")
    actions = [1, 3, 3, 2, 0, 3]
    with GenericEnvClient(base_url=breakout_server).sync() as env:
        first = env.reset(seed=11)
        steps = [env.step({"action_id": a}) for a in actions]
    screen, info = reference.reset(seed=11)
    assert first.observation["screen_shape"] == [210, 160, 3]
    assert first.observation["legal_actions"] == [0, 1, 2, 3] and first.observation["lives"] == 5
    assert np.array_equal(np.asarray(first.observation["screen"], np.uint8).reshape(210, 160, 3), screen)
    for result, a in zip(steps, actions):
        screen, reward, terminated, _, info = reference.step(a)
        observation = result.observation
        assert np.array_equal(np.asarray(observation["screen"], np.uint8).reshape(observation["screen_shape"]), screen)
        assert (result.reward, result.done, observation["lives"]) == (reward, terminated, info["lives"])
        assert observation["frame_number"] == info["frame_number"]
    reference.close()


def test_typed_upstream_models_validate_atari_observations(breakout_server):
    # Upstream's typed client sends game_name/obs_type/full_action_space with every action
    # (its defaults name pong); the server accepts them and plays its own game.
    with UpstreamAtariClient(base_url=breakout_server).sync() as env:
        first = env.reset(seed=0)
        result = env.step(UpstreamAtariAction(action_id=3))
        state = env.state()
    for observation in (first.observation, result.observation):
        assert isinstance(observation, UpstreamAtariObservation)
        assert len(observation.screen) == 210 * 160 * 3 and observation.screen_shape == [210, 160, 3]
        assert observation.legal_actions == [0, 1, 2, 3]
    assert (state["game_name"], state["obs_type"], state["full_action_space"], state["step_count"]) == ("breakout", "rgb", False, 1)


def test_atari_gym_spaces_stay_ale_v5s(breakout_server):
    env = gym.make("openenv/remote-v0", url=breakout_server)
    try:
        assert env.action_space == gym.spaces.Discrete(4)
        assert env.observation_space == gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
        obs, info = env.reset(seed=0)
        assert obs.shape == (210, 160, 3) and obs.dtype == np.uint8
        assert info["legal_actions"] == [0, 1, 2, 3] and info["screen_shape"] == [210, 160, 3]
    finally:
        env.close()


# --- OpenSpiel -------------------------------------------------------------------------


class UpstreamOpenSpielAction(Action):
    action_id: int
    game_name: str = "catch"
    game_params: dict[str, Any] = Field(default_factory=dict)


class UpstreamOpenSpielObservation(Observation):
    info_state: list[float]
    legal_actions: list[int]
    game_phase: str = "playing"
    current_player_id: int = 0
    opponent_last_action: int | None = None


class UpstreamOpenSpielClient(TypedClient):
    observation_model = UpstreamOpenSpielObservation


TIC_TAC_TOE = {"game": "tic_tac_toe", "opponent": "random"}


@pytest.fixture(scope="module")
def tic_tac_toe_server():
    with serve("openspiel", "OpenSpielEnvironment", **TIC_TAC_TOE) as provider:
        yield provider.base_url


def test_generic_client_plays_openspiel_with_upstream_fields(tic_tac_toe_server):
    # The same seed and moves in process give the trajectory the client must see.
    local = OpenSpielEnvironment(**TIC_TAC_TOE)
    expected = local.reset(seed=5)
    with GenericEnvClient(base_url=tic_tac_toe_server).sync() as env:
        result = env.reset(seed=5)
        phases = [result.observation["game_phase"]]
        while True:
            observation = result.observation
            assert observation["info_state"] == expected.info_state.reshape(-1).tolist()  # one flat list
            assert observation["legal_actions"] == expected.legal_actions
            assert observation["current_player_id"] == expected.current_player_id == 0
            assert observation["opponent_last_action"] == expected.opponent_last_action
            if result.done:
                break
            move = observation["legal_actions"][-1]
            result = env.step({"action_id": move})
            expected = local.step(OpenSpielAction(action_id=move))
            phases.append(result.observation["game_phase"])
            assert result.reward == expected.reward
    assert phases[0] == "initial" and phases[-1] == "terminal" and set(phases[1:-1]) <= {"playing"}
    assert len(phases) > 2


def test_typed_upstream_models_validate_openspiel_observations(tic_tac_toe_server):
    with UpstreamOpenSpielClient(base_url=tic_tac_toe_server).sync() as env:
        first = env.reset(seed=1)
        second = env.step(UpstreamOpenSpielAction(action_id=first.observation.legal_actions[0], game_name="tic_tac_toe"))
        state = env.state()
    assert len(first.observation.info_state) == 27 and first.observation.game_phase == "initial"
    assert first.observation.opponent_last_action is None
    # The random opponent answered: its move is no longer legal.
    opponent = second.observation.opponent_last_action
    assert opponent is not None and opponent not in second.observation.legal_actions
    assert (state["game_name"], state["num_players"], state["agent_player"]) == ("tic_tac_toe", 2, 0)


def test_openspiel_gym_spaces_keep_the_tensor_shape(tic_tac_toe_server):
    env = gym.make("openenv/remote-v0", url=tic_tac_toe_server)
    try:
        assert env.action_space == gym.spaces.Discrete(9)
        assert set(env.observation_space.spaces) == {"info_state", "action_mask", "current_player_id"}
        obs, info = env.reset(seed=0)
        assert obs["info_state"].shape == (3, 3, 3) and info["game_phase"] == "initial"
    finally:
        env.close()


# --- the other servers with an upstream counterpart --------------------------------------


def test_generic_client_trades_finrl_with_upstream_fields():
    with serve("finrl", "FinRLEnvironment", tickers=["AAPL", "MSFT"]) as provider:
        with GenericEnvClient(base_url=provider.base_url).sync() as env:
            first = env.reset(seed=0)
            result = env.step({"actions": [0.5, -0.25]})
    assert isinstance(first.observation["state"], list) and len(first.observation["state"]) == len(result.observation["state"])
    assert first.observation["state"][0] == 1_000_000.0  # cash first, as FinRL lays it out
    assert result.observation["date"] > first.observation["date"]
    assert result.observation["portfolio_value"] == pytest.approx(first.observation["portfolio_value"] + result.reward / 1e-4)


def test_generic_client_plays_browsergym_with_upstream_fields():
    with serve("browsergym", "BrowserGymEnvironment", task="miniwob.click-test") as provider:
        with GenericEnvClient(base_url=provider.base_url).sync() as env:
            first = env.reset(seed=0).observation
            wrong = env.step({"action_str": 'click("999")'})
            button = next(line for line in first["text"].splitlines() if "] button " in line)
            bid = button.split("]")[0].lstrip("[")
            right = env.step({"action_str": f'click("{bid}")'})
    assert first["goal"] == "Click the button." and first["url"].endswith(".html")
    assert (first["error"], first["last_action_error"]) == ("", False)
    assert np.asarray(first["screenshot"]).shape == (210, 160, 3)  # nested lists, as upstream's
    assert wrong.observation["last_action_error"] is True and "999" in wrong.observation["error"]
    assert (right.reward, right.done, right.observation["last_action_error"]) == (1.0, True, False)


def test_generic_client_runs_repl_cells_with_upstream_fields():
    with serve("repl", "ReplEnvironment") as provider:
        with GenericEnvClient(base_url=provider.base_url).sync() as env:
            env.reset()
            env.step({"code": "x = 6 * 7", "is_final": False, "final_answer": None})
            result = env.step({"code": "print(x)"})
            failed = env.step({"code": "1 / 0"})
    assert result.observation["result"] == {"stdout": "42\n", "stderr": "", "success": True, "exception": None}
    assert result.observation["iteration"] == 2
    assert failed.observation["result"]["success"] is False and "ZeroDivisionError" in failed.observation["result"]["stderr"]


def test_generic_client_echoes_with_upstream_fields(echo_server):
    with GenericEnvClient(base_url=echo_server).sync() as env:
        env.reset()
        result = env.step({"message": "upstream"})
    assert (result.observation["echoed_message"], result.observation["message_length"]) == ("upstream", 8)



# --- Coding: upstream's typed client refuses fields its model does not declare -----------


class UpstreamCodeAction(Action):
    code: str


class UpstreamCodeObservation(Observation):  # openenv-core's Observation forbids extra fields
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


class UpstreamCodeState(State):
    last_exit_code: int = 0


class UpstreamCodingClient(TypedClient):
    """Parses as upstream's ``CodingEnv`` does: the whole observation object into the model."""

    def _parse_result(self, payload: dict[str, Any]) -> StepResult:
        observation = UpstreamCodeObservation(**payload["observation"])
        return StepResult(observation=observation, reward=payload.get("reward"), done=bool(payload.get("done", False)))

    def _parse_state(self, payload: dict[str, Any]) -> UpstreamCodeState:
        return UpstreamCodeState(**payload)


@pytest.fixture(scope="module")
def coding_server():
    with serve("coding", "CodingEnvironment") as provider:
        yield provider.base_url


def test_generic_client_runs_code_with_upstream_fields(coding_server):
    with GenericEnvClient(base_url=coding_server).sync() as env:
        env.reset()
        result = env.step({"code": "print('hi')\nraise SystemExit(3)"})
        state = env.state()
    assert set(result.observation) == {"stdout", "stderr", "exit_code", "metadata"}
    assert (result.observation["stdout"], result.observation["exit_code"]) == ("hi\n", 3)
    assert state["last_exit_code"] == 3


def test_typed_upstream_models_validate_coding_observations(coding_server):
    with UpstreamCodingClient(base_url=coding_server).sync() as env:
        first = env.reset()
        exited = env.step(UpstreamCodeAction(code="print('hi')\nraise SystemExit(3)"))
        killed = env.step(UpstreamCodeAction(code="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))
        state = env.state()
    assert first.observation.exit_code == 0 and first.observation.metadata["message"].startswith("Python sandbox")
    assert (exited.observation.stdout, exited.observation.exit_code) == ("hi\n", 3)
    # Our fields beyond upstream's three ride in the observation's metadata.
    assert exited.observation.metadata["message"] == "exited with code 3" and exited.observation.metadata["status"] == "error"
    assert killed.observation.exit_code == 128 + 9 and killed.observation.metadata["status"] == "killed"
    assert (state.last_exit_code, state.step_count) == (137, 2)


@pytest.mark.parametrize("protocol", ["openenv", "batch"])
def test_coding_gym_space_keeps_message_on_both_protocols(coding_server, protocol):
    env = gym.make("openenv/remote-v0", url=coding_server, protocol=protocol)
    try:
        assert set(env.observation_space.spaces) == {"stdout", "stderr", "message"}
        env.reset(seed=0)
        obs, _, _, _, info = env.step({"code": "raise SystemExit(3)", "timeout": np.float64(10.0)})
        assert obs["message"] == "exited with code 3"
        assert (info["exit_code"], info["status"]) == (3, "error") and "metadata" not in info
    finally:
        env.close()


# --- Chat: upstream's client sends a token list of any length ------------------------------


class UpstreamChatAction(Action):
    tokens: list[int] = Field(..., min_length=1)


class UpstreamChatObservation(Observation):
    messages: list[Message] = Field(default_factory=list)
    tokens: list[int] = Field(default_factory=list)


class UpstreamChatClient(TypedClient):
    """Sends and parses as upstream's ``ChatEnv`` does."""

    observation_model = UpstreamChatObservation

    def _step_payload(self, action: UpstreamChatAction) -> dict[str, Any]:
        return {"tokens": action.tokens, "metadata": action.metadata}


@pytest.fixture(scope="module")
def chat_server():
    with serve("chat", "ChatEnvironment") as provider:
        yield provider.base_url


def test_generic_client_reads_chat_messages(chat_server):
    with GenericEnvClient(base_url=chat_server).sync() as env:
        first = env.reset(seed=0).observation
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert first["messages"][0]["content"] in first["text"]
    assert first["tokens"][: first["length"]] and len(first["tokens"]) >= first["length"]


def test_upstream_chat_client_replies_with_a_short_token_list(chat_server):
    answer = ChatEnvironment().reset(seed=0).task_info["question"]["answer"]
    reply = ChatTokenizer().encode(answer)
    assert 0 < len(reply) < 32  # fewer ids than the action's token box holds
    with UpstreamChatClient(base_url=chat_server).sync() as env:
        first = env.reset(seed=0)
        result = env.step(UpstreamChatAction(tokens=reply))
        with pytest.raises(RuntimeError, match="does not fit"):  # 33 ids: one too many
            env.step(UpstreamChatAction(tokens=[reply[0]] * 33))
    assert [m["role"] for m in first.observation.messages] == ["user"]
    assert result.reward == 1.0
    assert result.observation.messages[1] == {"role": "assistant", "content": answer}


def test_chat_gym_spaces_keep_fixed_size_tokens(chat_server):
    env = gym.make("openenv/remote-v0", url=chat_server)
    try:
        assert env.action_space["tokens"].shape == (32,) and env.action_space["length"] == gym.spaces.Discrete(33)
        obs, _ = env.reset(seed=0)
        assert obs["tokens"].shape == (256,)
    finally:
        env.close()
