"""The REPL server: a persistent interpreter in a real bubblewrap sandbox."""

from __future__ import annotations

import asyncio
import random
import time

import gymnasium as gym
import pytest

import gym_openenv.registry
from gym_openenv.spaces import ModelSpec
from gym_openenv.servers.repl.client import ReplEnv
from gym_openenv.servers.repl.models import ReplAction, ReplObservation
from gym_openenv.servers.repl.server.environment import ReplEnvironment
from gym_openenv.servers.repl.server.tasks import TASKS, answers_match

REPL_ID = "openenv/repl-v0"
ENVIRONMENT = "gym_openenv.servers.repl.server.environment:ReplEnvironment"


@pytest.fixture(scope="module")
def repl():
    env = ReplEnvironment(max_timeout=5)
    yield env
    env.close()


def cell(env: ReplEnvironment, code: str, timeout: float = 5.0) -> ReplObservation:
    return env.step(ReplAction(code=code, timeout=timeout))


def test_spaces_hold_the_text_fields():
    assert set(ModelSpec.from_model(ReplAction).space.spaces) == {"code", "timeout"}
    spec = ModelSpec.from_model(ReplObservation)
    assert set(spec.space.spaces) == {"stdout", "stderr", "message"}
    assert [f.name for f in spec.info_fields] == [
        "status", "final_answer", "task_id", "result", "iteration", "max_iterations", "context_length"
    ]


def test_variables_survive_steps_and_reset_starts_fresh(repl):
    assert "Persistent Python interpreter" in repl.reset().message
    cell(repl, "x = 20")
    cell(repl, "def double(v):\n    return 2 * v")
    observation = cell(repl, "double(x) + 2")
    assert (observation.stdout, observation.status, observation.message) == ("42\n", "ok", "ok")
    repl.reset()
    observation = cell(repl, "x")
    assert observation.status == "error" and "NameError: name 'x' is not defined" in observation.stderr


def test_tracebacks_point_into_the_cell(repl):
    repl.reset()
    observation = cell(repl, "a = 1\nb = 0\na / b")
    assert 'File "<cell 1>", line 3' in observation.stderr and "a / b" in observation.stderr
    assert "driver.py" not in observation.stderr


def test_timeout_interrupts_and_keeps_state(repl):
    repl.reset()
    cell(repl, "kept = [1, 2, 3]")
    started = time.monotonic()
    observation = cell(repl, "import time\nwhile True:\n    time.sleep(0.05)", timeout=1.0)
    assert 0.9 < time.monotonic() - started < 30  # the timeout fired (upper bound: no hang, even on a busy machine)
    assert observation.status == "timeout" and "KeyboardInterrupt" in observation.stderr
    assert "interrupted" in observation.message
    assert cell(repl, "kept").stdout == "[1, 2, 3]\n"


def test_an_uninterruptible_cell_costs_the_interpreter(repl):
    repl.reset()
    cell(repl, "kept = 1")
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    observation = cell(repl, code, timeout=1.0)
    assert observation.status == "timeout" and "variables were lost" in observation.message
    assert repl.state.restarts == 1
    assert "NameError" in cell(repl, "kept").stderr and cell(repl, "1 + 1").stdout == "2\n"


def test_exit_does_not_end_the_interpreter(repl):
    repl.reset()
    cell(repl, "kept = 1")
    assert "SystemExit ignored" in cell(repl, "exit()").stderr
    assert cell(repl, "kept").stdout == "1\n"


def test_stdin_is_empty(repl):
    repl.reset()
    assert "EOFError" in cell(repl, "input()").stderr


def test_stream_step_yields_output_while_the_cell_runs(repl):
    repl.reset()
    code = "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.6)"
    started = time.monotonic()
    seen = [(time.monotonic() - started, o) for o in repl.stream_step(ReplAction(code=code))]
    assert seen[0][1].metadata.get("partial") and seen[0][1].stdout.startswith("tick")
    assert seen[-1][1].stdout == "tick 0\ntick 1\ntick 2\n"
    assert seen[-1][0] - seen[0][0] > 1.0  # the first output came well before the end


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="task must be None, 'random' or one of"):
        ReplEnvironment(task="nope")
    with pytest.raises(ValueError, match="max_steps"):
        ReplEnvironment(max_steps=0)


# --- tasks -------------------------------------------------------------------------


SOLUTIONS = {
    "needle": "import re\nFINAL(re.search(r'current access code is (\\d{6})', context).group(1))",
    "log_errors": (
        "import re\nservice = re.search(r\"service '(\\w+)'\", QUESTION).group(1)\n"
        "FINAL(sum(1 for l in context.splitlines() if ' ERROR ' in l and f'[{service}]' in l))"
    ),
    "csv_revenue": (
        "import csv, io, re\nregion = re.search(r\"region '(\\w+)'\", QUESTION).group(1)\n"
        "rows = csv.DictReader(io.StringIO(context))\n"
        "FINAL(f\"{sum(int(r['quantity']) * round(float(r['unit_price']) * 100) for r in rows if r['region'] == region) / 100:.2f}\")"
    ),
    "json_top_user": (
        "import json, re\nteam = re.search(r\"team '(\\w+)'\", QUESTION).group(1)\n"
        "users = [u for u in json.loads(context)['users'] if u['team'] == team]\n"
        "FINAL(max(users, key=lambda u: u['score'])['name'])"
    ),
    "word_frequency": (
        "from collections import Counter\n"
        "counts = Counter(w.strip('.').lower() for w in context.split() if len(w.strip('.')) >= 7)\n"
        "print(f'FINAL({counts.most_common(1)[0][0]})')"  # the printed form counts too
    ),
}


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_each_task_is_solvable_with_code(task_id):
    env = ReplEnvironment(task=task_id)
    try:
        first = env.reset(seed=7)
        assert "FINAL(answer)" in first.message and first.task_id == task_id
        question = first.message.split("\n\n")[0]
        cell(env, f"QUESTION = {question!r}")
        observation = cell(env, SOLUTIONS[task_id])
        assert observation.message.endswith("is correct"), (observation.message, observation.stderr)
        assert (observation.reward, observation.done, observation.truncated) == (1.0, True, False)
        assert observation.final_answer == TASKS[task_id](random.Random(7)).answer
    finally:
        env.close()


def test_wrong_answer_ends_the_episode_without_reward():
    env = ReplEnvironment(task="needle")
    try:
        env.reset(seed=1)
        observation = cell(env, "FINAL('000000')")
        assert (observation.reward, observation.done, observation.final_answer) == (0.0, True, "000000")
        assert observation.message == "answer '000000' is wrong"
    finally:
        env.close()


def test_upstream_explicit_final_answer_and_result_fields():
    # Upstream repl_env's action fields: is_final with final_answer submits the answer.
    env = ReplEnvironment(task="needle", max_steps=5)
    try:
        first = env.reset(seed=3)
        assert (first.iteration, first.max_iterations) == (0, 5)
        assert first.context_length == len(TASKS["needle"](random.Random(3)).context) > 0
        answer = TASKS["needle"](random.Random(3)).answer
        observation = env.step(ReplAction(code="1 / 0", is_final=True, final_answer=answer))
        assert (observation.reward, observation.done, observation.final_answer) == (1.0, True, answer)
        assert observation.result["success"] is False and "ZeroDivisionError" in observation.result["stderr"]
        assert observation.result["exception"] == "error" and observation.iteration == 1
        env.reset(seed=3)
        observation = env.step(ReplAction(code="print('hi')", final_answer=answer))  # is_final not set: no answer
        assert (observation.reward, observation.done, observation.final_answer) == (0.0, False, None)
        assert observation.result["stdout"] == "hi\n" and observation.result["success"] is True
        assert observation.result["exception"] is None
    finally:
        env.close()


def test_task_episodes_are_truncated_after_max_steps():
    env = ReplEnvironment(task="log_errors", max_steps=2)
    try:
        env.reset(seed=0)
        assert not cell(env, "len(context)").done
        observation = cell(env, "context[:10]")
        assert observation.done and observation.truncated and observation.reward == 0.0
    finally:
        env.close()


def test_seeds_give_reproducible_task_instances():
    generated = [TASKS["csv_revenue"](random.Random(s)) for s in (3, 3, 4)]
    assert generated[0] == generated[1] and generated[0].context != generated[2].context
    assert answers_match(" '42.50' ", "42.5") and answers_match("Orchard.", "orchard") and not answers_match("7", "8")


# --- through a server process ------------------------------------------------------


@pytest.fixture(scope="module")
def repl_id() -> str:
    gym_openenv.registry.register_all()
    if REPL_ID not in gym.registry:  # until registry.yaml lists repl; then this branch goes
        gym.register(
            REPL_ID,
            entry_point=gym_openenv.registry.ENTRY_POINT,
            vector_entry_point=gym_openenv.registry.VECTOR_ENTRY_POINT,
            kwargs={"environment": ENVIRONMENT},
        )
    return REPL_ID


def test_gym_make_task_episode(repl_id):
    env = gym.make(repl_id, task="needle")
    try:
        observation, info = env.reset(seed=5)
        assert "access code" in observation["message"] and info["task_id"] == "needle"
        env.step({"code": "n = len(context)", "timeout": 5.0})
        observation, reward, terminated, truncated, info = env.step({"code": SOLUTIONS["needle"], "timeout": 5.0})
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert info["final_answer"] == TASKS["needle"](random.Random(5)).answer
    finally:
        env.close()


def test_typed_client_streams_partial_output():
    async def main():
        async with ReplEnv.launch() as client:
            await client.reset()
            await client.step(ReplAction(code="import time"))
            code = "for i in range(3):\n    print(i)\n    time.sleep(0.5)"
            return [r async for r in client.stream_step(ReplAction(code=code))]

    results = asyncio.run(main())
    assert len(results) >= 3 and results[0].observation.stdout.startswith("0")
    assert results[-1].observation.stdout == "0\n1\n2\n" and results[-1].observation.status == "ok"


def test_step_batch_runs_cells_concurrently_with_the_same_results():
    envs = [ReplEnvironment() for _ in range(3)]
    try:
        for i, env in enumerate(envs):
            env.reset()
            cell(env, f"me = {i}")
        actions = [ReplAction(code="import time\ntime.sleep(1.5)\nme * 10")] * 2 + [ReplAction(code="me / 0")]
        started = time.monotonic()
        batch = ReplEnvironment.step_batch(envs, actions)
        batch_seconds = time.monotonic() - started
        assert [o.stdout for o in batch] == ["0\n", "10\n", ""] and batch[2].status == "error"
        for i, env in enumerate(envs):  # the same history again, for the same cell numbers
            env.reset()
            cell(env, f"me = {i}")
        started = time.monotonic()
        assert batch == [env.step(action) for env, action in zip(envs, actions)]
        # Concurrent: one 1.5 s sleep instead of two in a row (compared, not bounded: the machine may be busy).
        assert batch_seconds < time.monotonic() - started
    finally:
        for env in envs:
            env.close()
