"""gym_openenv/servers/calculator: arithmetic tasks solved with MCP tool calls.

The environment in-process (task generation, rewards, episode ends), then
through a real server as ``gym.make("openenv/calculator-v0")``: an agent that
reads the question and calls the tools earns reward 1.0; sampled actions,
check_env and make_vec.
"""

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import gym_openenv  # noqa: F401  (registers openenv/calculator-v0)
from gym_openenv.server.mcp import CallToolAction, ListToolsAction, ListToolsObservation
from gym_openenv.servers.calculator.client import CalculatorEnv
from gym_openenv.servers.calculator.server.environment import CalculatorEnvironment
from gym_openenv.tools import ToolEnv, ToolVectorEnv

TOOLS = ["add", "divide", "multiply", "submit", "subtract"]
_TERM = re.compile(r"^\(?(.+?)\)? ([-+*]) (\d+)$")


def solve(question: str) -> float:
    """The task's value, evaluated by hand (the question is left-nested: ((a op b) op c) op d)."""
    expression = question.removeprefix("What is ").split("?")[0]
    match = _TERM.match(expression)
    if match is None:
        return float(expression)
    left, op, right = match.groups()
    a, b = solve(f"What is {left}?"), float(right)
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def call(name: str, **arguments) -> CallToolAction:
    return CallToolAction(tool_name=name, arguments=arguments)


def test_task_depends_only_on_the_seed():
    env = CalculatorEnvironment()
    first = env.reset(seed=7).question
    env.reset(seed=8)
    assert env.reset(seed=7).question == first
    assert len({env.reset(seed=s).question for s in range(20)}) > 15
    assert re.fullmatch(r"What is \(\(\d+ [-+*] \d+\) [-+*] \d+\) [-+*] \d+\? Use the tools, then submit the answer\.", first)
    env.close()


def test_submission_ends_the_episode_with_its_reward():
    env = CalculatorEnvironment()
    answer = solve(env.reset(seed=1).question)
    step = env.step(call("add", a=1, b=2))
    assert (step.result["data"], step.reward, step.done) == (3.0, 0.0, False)
    right = env.step(call("submit", answer=answer))
    assert right.reward == 1.0 and right.done and not right.truncated and right.result["data"] == "correct"
    env.reset(seed=1)
    wrong = env.step(call("submit", answer=answer + 1))
    assert wrong.reward == 0.0 and wrong.done and wrong.result["data"] == "incorrect"
    env.close()


def test_failed_calls_and_truncation():
    env = CalculatorEnvironment(max_steps=3)
    env.reset(seed=0)
    assert env.step(call("divide", a=1, b=0)).error["error_type"] == "execution_error"
    assert env.step(call("submit", answer="soon")).error["error_type"] == "invalid_args"  # not a submission
    last = env.step(call("multiply", a=2, b=3))
    assert last.done and last.truncated and last.reward == 0.0
    assert env.state.step_count == 3 and not env.state.submitted
    with pytest.raises(ValueError):
        CalculatorEnvironment(max_steps=0)
    env.close()


def test_an_agent_solves_tasks_through_gym_make():
    env = gym.make("openenv/calculator-v0")
    try:
        assert isinstance(env.unwrapped, ToolEnv)
        rewards = []
        for seed in range(3):
            question, info = env.reset(seed=seed)
            assert [t["name"] for t in info["tools"]] == TOOLS
            # Recompute the first operation with a tool, then submit the whole value.
            a, op, b = re.search(r"(\d+) ([-+*]) (\d+)", question).groups()
            tool = {"+": "add", "-": "subtract", "*": "multiply"}[op]
            obs, reward, terminated, _, _ = env.step({"tool": tool, "arguments": {tool: {"a": float(a), "b": float(b)}}})
            assert float(obs) == solve(f"What is {a} {op} {b}?") and reward == 0.0 and not terminated
            obs, reward, terminated, truncated, info = env.step({"tool": "submit", "arguments": {"submit": {"answer": solve(question)}}})
            assert obs == "correct" and terminated and not truncated and info["question"] == question
            rewards.append(reward)
        assert rewards == [1.0, 1.0, 1.0]
    finally:
        env.close()


def test_sampled_actions_and_check_env():
    env = gym.make("openenv/calculator-v0", max_steps=50)
    try:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs) and obs.startswith("What is")
        env.action_space.seed(0)
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert info["error"] is None and env.observation_space.contains(obs)
            assert reward in (0.0, 1.0)
            if terminated or truncated:
                env.reset()
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_make_vec_steps_separate_sessions():
    envs = gym.make_vec("openenv/calculator-v0", num_envs=3)
    try:
        assert isinstance(envs, ToolVectorEnv)
        questions, _ = envs.reset(seed=10)
        assert len(set(questions)) == 3  # env i gets seed 10 + i
        answers = np.array([solve(q) for q in questions])
        actions = envs.action_space.sample()
        actions["tool"] = np.full(3, TOOLS.index("submit"))
        actions["arguments"]["submit"]["answer"] = answers + np.array([0.0, 1.0, 0.0])
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        assert list(obs) == ["correct", "incorrect", "correct"]
        assert list(rewards) == [1.0, 0.0, 1.0] and terminated.all()
        obs, *_ = envs.step(envs.action_space.sample())  # next-step autoreset: a new task each
        assert all(q.startswith("What is") for q in obs)
    finally:
        envs.close()


def test_typed_client():
    with CalculatorEnv.launch().sync() as env:
        question = env.reset(seed=4).observation.question
        result = env.step(call("multiply", a=6, b=7))
        assert result.observation.result["data"] == 42.0 and result.reward == 0.0
        listed = env.step(ListToolsAction()).observation
        assert isinstance(listed, ListToolsObservation) and [t["name"] for t in listed.tools] == TOOLS
        done = env.step(call("submit", answer=solve(question)))
        assert done.reward == 1.0 and done.done and env.state().submitted
