"""gym_openenv.integrations.trl: chat sessions on real server processes as
GRPO reward functions, called directly and inside a short GRPOTrainer run on a
tiny randomly initialised GPT-2 (built locally, nothing downloaded)."""

import os
import re
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach for the hub

import gymnasium as gym
import numpy as np
import pytest

import gym_openenv  # noqa: F401  (registers openenv/* ids)
from gym_openenv.integrations.trl import EnvRewardFunction, prompt_dataset
from gym_openenv.servers.chat.models import ChatAction
from gym_openenv.servers.chat.server.environment import ChatEnvironment
from gym_openenv.servers.chat.server.tokenizer import DEFAULT_TOKENIZER_PATH, ChatTokenizer

TOKENIZER = ChatTokenizer()


def chat_env(**kwargs) -> gym.Env:
    return gym.make("openenv/chat-v0", **kwargs)


def solve(prompt: str) -> str:
    a, op, b = re.search(r"(\d+) ([-+*]) (\d+)\?<\|assistant\|>$", prompt).groups()
    return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])


@pytest.fixture(scope="module")
def arithmetic_env():
    env = chat_env(task="arithmetic")
    yield env
    env.close()


def test_module_imports_neither_trl_nor_torch():
    code = "import sys, gym_openenv.integrations.trl; print(sorted({'trl', 'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_prompts_are_seeded_first_observations(arithmetic_env):
    rows = prompt_dataset(arithmetic_env, range(3, 7))
    assert [r["seed"] for r in rows] == [3, 4, 5, 6]
    local = ChatEnvironment(task="arithmetic")
    assert [r["prompt"] for r in rows] == [local.reset(seed=s).text for s in range(3, 7)]


def test_rewards_score_completions_in_sessions(arithmetic_env):
    rows = prompt_dataset(arithmetic_env, range(6))
    prompts, seeds = [r["prompt"] for r in rows], [r["seed"] for r in rows]
    answers = [solve(p) if i % 2 else "no idea" for i, p in enumerate(prompts)]
    by_text = EnvRewardFunction(arithmetic_env, encode=TOKENIZER.encode)
    assert by_text(prompts, answers, seed=seeds) == [0.0, 1.0] * 3
    by_ids = EnvRewardFunction(arithmetic_env)
    ids = [TOKENIZER.encode(a) for a in answers]
    assert by_ids(prompts, answers, completion_ids=ids, seed=seeds) == [0.0, 1.0] * 3
    conversational = [[{"role": "assistant", "content": a}] for a in answers]
    assert by_text([None] * 6, conversational, seed=seeds) == [0.0, 1.0] * 3


def make_vector(kind: str, num_envs: int, **kwargs) -> gym.vector.VectorEnv:
    if kind == "batched":  # one server session per env, stepped in one message
        return gym.make_vec("openenv/chat-v0", num_envs=num_envs, num_servers=1, **kwargs)
    return gym.vector.SyncVectorEnv([lambda: chat_env(**kwargs)] * num_envs)


@pytest.mark.parametrize("kind", ["batched", "sync"])
def test_vector_env_scores_in_batches_like_one_env(arithmetic_env, kind):
    rows = prompt_dataset(arithmetic_env, range(10, 15))
    prompts, seeds = [r["prompt"] for r in rows], [r["seed"] for r in rows]
    completions = [solve(p) if i in (0, 3, 4) else "7" for i, p in enumerate(prompts)]
    vector = make_vector(kind, 2, task="arithmetic")
    try:
        assert prompt_dataset(vector, range(10, 15)) == rows
        batched = EnvRewardFunction(vector, encode=TOKENIZER.encode)(prompts, completions, seed=seeds)
    finally:
        vector.close()
    single = EnvRewardFunction(arithmetic_env, encode=TOKENIZER.encode)(prompts, completions, seed=seeds)
    assert batched == single and batched[0] == batched[3] == batched[4] == 1.0


def test_long_completions_are_cut_to_the_action_size():
    env = chat_env(task="constrained", task_kwargs={"min_words": 5, "max_words": 5}, max_reply_tokens=4)
    try:
        (row,) = prompt_dataset(env, [0])
        word = re.search(r"word '(\w+)'", row["prompt"]).group(1)
        reward = EnvRewardFunction(env, encode=TOKENIZER.encode)
        long_reply = f"{word} " + "and so on " * 20
        assert reward([row["prompt"]], [long_reply], seed=[0]) == [1.0]  # 4 tokens: 4 words, under 5
    finally:
        env.close()


def test_mismatched_prompt_or_missing_seed_is_an_error(arithmetic_env):
    reward = EnvRewardFunction(arithmetic_env, encode=TOKENIZER.encode)
    with pytest.raises(ValueError, match="seed 0"):
        reward(["<|user|>What is 1 + 1?<|assistant|>"], ["2"], seed=[0])
    with pytest.raises(ValueError, match="seed_key"):
        reward(["x"], ["2"])
    with pytest.raises(ValueError, match="encode"):
        EnvRewardFunction(arithmetic_env)(["x"], ["2"], seed=[0])
    echo = gym.make("openenv/echo-v0")
    try:
        with pytest.raises(ValueError, match="Dict action space"):
            EnvRewardFunction(echo)
    finally:
        echo.close()


def test_grpo_trainer_trains_on_session_rewards(tmp_path):
    import torch
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(DEFAULT_TOKENIZER_PATH), pad_token="<|pad|>", eos_token="<|end|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    before = [p.detach().clone() for p in model.parameters()]

    env_kwargs = {"task": "constrained", "task_kwargs": {"min_words": 3, "max_words": 3}, "max_reply_tokens": 8}
    vector = make_vector("batched", 4, **env_kwargs)
    reward = EnvRewardFunction(vector)
    calls = []

    def recorded(prompts, completions, completion_ids, **kwargs):
        rewards = reward(prompts, completions, completion_ids=completion_ids, **kwargs)
        calls.append((list(kwargs["seed"]), [list(map(int, i)) for i in completion_ids], rewards))
        return rewards

    recorded.__name__ = "env_reward"
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=3e-3, logging_steps=1, report_to="none", save_strategy="no",
        use_cpu=True, bf16=False, seed=0,
    )  # fmt: skip
    try:
        rows = prompt_dataset(vector, range(16))
        trainer = GRPOTrainer(
            model=model, reward_funcs=[recorded], args=args,
            train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        )  # fmt: skip
        trainer.train()
    finally:
        vector.close()

    assert len(calls) == 2 and all(len(r) == 4 for _, _, r in calls)
    logged = [h["rewards/env_reward/mean"] for h in trainer.state.log_history if "rewards/env_reward/mean" in h]
    assert logged == pytest.approx([float(np.mean(r)) for _, _, r in calls])
    # Each reward is what an in-process session gives for the same seed and tokens.
    local = ChatEnvironment(**env_kwargs)
    for seeds, ids, rewards in calls:
        for seed, tokens, r in zip(seeds, ids, rewards):
            local.reset(seed=seed)
            assert local.step(ChatAction(tokens=tokens[:8])).reward == r
    assert any(np.std(r) > 0 for _, _, r in calls)  # some group had different rewards: a gradient
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
