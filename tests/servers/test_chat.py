"""Chat: the shipped tokenizer, the built-in and pluggable tasks, turns and
truncation, token validation, and the server (in process and as a real
server process through the gymnasium env)."""

import json
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from fastapi.testclient import TestClient
from gymnasium.spaces import Box, Discrete
from gymnasium.utils.env_checker import check_env
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from gym_openenv.server import create_app
from gym_openenv.spaces import ModelSpec
from gym_openenv.servers.chat.models import ChatAction
from gym_openenv.servers.chat.server import build_tokenizer
from gym_openenv.servers.chat.server.environment import ChatEnvironment
from gym_openenv.servers.chat.server.tasks import ArithmeticTask, ConstrainedReplyTask, load_task
from gym_openenv.servers.chat.server.tokenizer import DEFAULT_TOKENIZER_PATH, ChatTokenizer



def say(env: ChatEnvironment, text: str) -> ChatAction:
    return ChatAction(tokens=env.tokenizer.encode(text))


# --- tokenizer --------------------------------------------------------------------


def test_shipped_tokenizer_is_small_byte_level_and_rebuilds_identically():
    assert DEFAULT_TOKENIZER_PATH.stat().st_size < 1_000_000
    tok = ChatTokenizer()
    assert tok.vocab_size == 1024 and tok.pad_id == 0
    for text in ["What is 3 + 17?", "Ünïcödé, emoji 😀 and tabs\t!", ""]:
        assert tok.decode(tok.encode(text)) == text
    corpus = build_tokenizer.CORPUS_PATH.read_text().splitlines() + build_tokenizer.task_conversations()
    rebuilt = json.loads(build_tokenizer.train(corpus).to_str())
    assert rebuilt == json.loads(DEFAULT_TOKENIZER_PATH.read_text())


def test_tokenizer_path_loads_any_local_tokenizer(tmp_path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(
        ["What is 2 + 2? 4"] * 10,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False),
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))  # a Hugging Face-style directory
    env = ChatEnvironment(tokenizer_path=str(tmp_path))
    vocab = tokenizer.get_vocab_size()
    assert env.field_spaces()["action"]["tokens"] == Box(0, vocab - 1, (32,), np.int64)
    obs = env.reset(seed=0)
    assert obs.text.startswith("<|user|>What is") and obs.tokens.max() < vocab
    with pytest.raises(ValueError, match="tokenizer_path"):
        ChatEnvironment(tokenizer_path=str(tmp_path / "missing"))


# --- tasks and turns ----------------------------------------------------------------


def test_arithmetic_scores_exact_answers_and_ends_after_its_rounds():
    env = ChatEnvironment(task="arithmetic", task_kwargs={"rounds": 3})
    obs = env.reset(seed=4)
    assert obs.text == f"<|user|>{obs.message}<|assistant|>" and obs.turn == 0
    answer = obs.task_info["question"]["answer"]
    a, op, b = obs.message.removeprefix("What is ").removesuffix("?").split()
    assert answer == str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])

    obs = env.step(say(env, f" {answer}\n"))
    assert (obs.reward, obs.done, obs.task_info["scored"]["correct"]) == (1.0, False, True)
    assert obs.message.startswith("Correct. What is")
    obs = env.step(say(env, f"{obs.task_info['question']['answer']}."))  # not exactly the answer
    assert (obs.reward, obs.done) == (0.0, False) and obs.message.startswith("Wrong, it is")
    obs = env.step(say(env, obs.task_info["question"]["answer"]))
    assert (obs.reward, obs.done, obs.truncated, obs.message) == (1.0, True, False, None)
    assert [m["role"] for m in env.state.messages] == ["user", "assistant"] * 3
    assert obs.messages == env.state.messages  # upstream chat_env's observation field
    with pytest.raises(ValueError, match="reset"):
        env.step(say(env, "1"))


def test_arithmetic_options():
    task = ArithmeticTask(rounds=5, max_operand=3, operations="*")
    rng = np.random.default_rng(0)
    message = task.reset(rng)
    for _ in range(4):
        a, op, b = message.split("What is ")[1].removesuffix("?").split()
        assert op == "*" and 0 <= int(a) <= 3 and 0 <= int(b) <= 3 and task.answer == str(int(a) * int(b))
        message = task.score(task.answer).message
    for kwargs, field in [({"operations": "/"}, "operations"), ({"max_operand": 0}, "max_operand")]:
        with pytest.raises(ValueError, match=field):
            ArithmeticTask(**kwargs)


def test_max_turns_truncates():
    env = ChatEnvironment(task="arithmetic", task_kwargs={"rounds": 100}, max_turns=2)
    env.reset(seed=0)
    assert not env.step(say(env, "1")).done
    obs = env.step(say(env, "1"))
    assert obs.done and obs.truncated and obs.turn == 2


def test_constrained_reply_scores_each_rule():
    task = ConstrainedReplyTask(rounds=1, min_words=5, max_words=5, words=["river"])
    assert task.reset(np.random.default_rng(0)) == "Reply in under 5 words and use the word 'river'."
    assert task.score("The River flows.").reward == 1.0
    task.reset(np.random.default_rng(0))
    assert task.score("the big wide slow river").reward == 0.5  # five words: too long
    task.reset(np.random.default_rng(0))
    assert task.score("rivers flow").reward == 0.5  # 'rivers' is not the word
    task.reset(np.random.default_rng(0))
    assert task.score("").reward == 0.0


def test_seeded_resets_reproduce_the_conversation():
    env = ChatEnvironment(task="constrained")
    first = [env.reset(seed=s).text for s in range(10)]
    assert first == [env.reset(seed=s).text for s in range(10)]
    assert len(set(first)) > 5
    other = ChatEnvironment(task="constrained")
    assert other.reset(seed=3).text == first[3]


def test_user_task_from_an_import_string(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(
        textwrap.dedent(
            """
            from gym_openenv.servers.chat.server.tasks import ChatTask, TaskReply

            class Shout(ChatTask):
                def __init__(self, bonus=0.0):
                    self.bonus = bonus

                def reset(self, rng):
                    return "Shout something."

                def score(self, reply):
                    return TaskReply(float(reply.isupper()) + self.bonus, done=True)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = ChatEnvironment(task="my_tasks:Shout", task_kwargs={"bonus": 0.5})
    env.reset()
    assert env.step(say(env, "HELLO")).reward == 1.5
    for name, kwargs, field in [
        ("nope", None, "task"),
        ("my_tasks:Missing", None, "task"),
        ("json:dumps", None, "task"),
        ("my_tasks:Shout", {"volume": 3}, "task_kwargs"),
        ("arithmetic", {"rounds": 0}, "rounds"),
    ]:
        with pytest.raises(ValueError, match=field):
            load_task(name, kwargs)


# --- tokens in and out --------------------------------------------------------------


def test_observation_is_the_padded_tail_of_the_conversation():
    env = ChatEnvironment(task="arithmetic", task_kwargs={"rounds": 50}, max_context_tokens=24)
    obs = env.reset(seed=1)
    ids = env.tokenizer.encode(obs.text)
    assert obs.length == len(ids) and list(obs.tokens[: obs.length]) == ids
    assert not obs.tokens[obs.length :].any()  # <|pad|> is id 0
    for _ in range(3):
        obs = env.step(say(env, "12"))
    full = env.tokenizer.encode(obs.text)
    assert len(full) > 24 and obs.length == 24 and list(obs.tokens) == full[-24:]


def test_action_length_selects_the_reply_tokens():
    env = ChatEnvironment(task="arithmetic")
    answer = env.reset(seed=2).task_info["question"]["answer"]
    ids = env.tokenizer.encode(answer)
    padded = np.zeros(32, np.int64)
    padded[: len(ids)] = ids
    assert env.step(ChatAction(tokens=padded, length=len(ids))).reward == 1.0


@pytest.mark.parametrize(
    "tokens, length, field",
    [
        ([1, 2], 3, "length"),
        ([5000], None, "tokens"),
        ([-1], None, "tokens"),
        (list(range(10, 43)), None, "max_reply_tokens"),
        ([1.5], None, "tokens"),
    ],
)
def test_bad_actions_name_the_field(tokens, length, field):
    env = ChatEnvironment()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=field):
        env.step(ChatAction(tokens=np.asarray(tokens), length=length))


# --- the server -------------------------------------------------------------------


def test_app_schema_and_websocket_session():
    with TestClient(create_app(ChatEnvironment, {"task": "arithmetic", "max_reply_tokens": 8})) as client:
        schema = client.get("/schema").json()
        action = ModelSpec.from_json_schema(schema["action"]).space
        assert action["tokens"] == Box(0, 1023, (8,), np.int64) and action["length"] == Discrete(9)
        assert client.get("/metadata").json()["vocab_size"] == 1024
        reference = ChatEnvironment(task="arithmetic", max_reply_tokens=8)
        expected = reference.reset(seed=9)
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "reset", "data": {"seed": 9}})
            reply = ws.receive_json()["data"]
            assert reply["observation"]["tokens"] == expected.tokens.tolist()
            answer = reply["observation"]["task_info"]["question"]["answer"]
            ids = reference.tokenizer.encode(answer)
            ws.send_json({"type": "step", "data": {"tokens": ids + [0] * (8 - len(ids)), "length": len(ids)}})
            reply = ws.receive_json()["data"]
            assert reply["reward"] == 1.0 and reply["observation"]["reply"] == answer
            ws.send_json({"type": "step", "data": {"tokens": [0] * 8, "length": 9}})
            error = ws.receive_json()
            assert error["type"] == "error" and "length" in error["data"]["message"]


def test_gym_make_through_a_server_process():
    env = gym.make("openenv/chat-v0", task="constrained", max_turns=3, max_context_tokens=64)
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, info = env.reset(seed=5)
        assert set(obs) == {"tokens", "length"} and obs["tokens"].shape == (64,)
        assert info["text"].startswith("<|user|>Reply in under")
        word = info["task_info"]["question"]["word"]
        ids = ChatTokenizer().encode(f"A {word}.")
        action = {"tokens": np.pad(ids, (0, 32 - len(ids))).astype(np.int64), "length": len(ids)}
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == 1.0 and not (terminated or truncated) and info["reply"] == f"A {word}."
        env.step(action)
        _, _, terminated, truncated, _ = env.step(action)
        assert terminated and truncated is False
    finally:
        env.close()


def test_gym_make_vec_batches_sessions():
    envs = gym.make_vec("openenv/chat-v0", num_envs=3, num_servers=1, task="arithmetic", max_reply_tokens=4)
    try:
        obs, info = envs.reset(seed=[7, 8, 9])
        local = ChatEnvironment(task="arithmetic", max_reply_tokens=4)
        for i, seed in enumerate([7, 8, 9]):
            assert list(obs["tokens"][i]) == local.reset(seed=seed).tokens.tolist()
        answers = [info["task_info"][i]["question"]["answer"] for i in range(3)]
        ids = [local.tokenizer.encode(a if i != 1 else "x") for i, a in enumerate(answers)]
        action = {
            "tokens": np.array([t + [0] * (4 - len(t)) for t in ids], dtype=np.int64),
            "length": np.array([len(t) for t in ids]),
        }
        _, reward, terminated, truncated, _ = envs.step(action)
        assert reward.tolist() == [1.0, 0.0, 1.0] and not terminated.any() and not truncated.any()
    finally:
        envs.close()
