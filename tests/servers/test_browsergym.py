"""BrowserGym server on real headless Chromium with MiniWoB++ task pages.

Scripted solvers read each task's goal and page ``text`` (as an agent would)
and must earn the task's own positive reward; wrong answers must get the
task's failure. Then: the action parser's safety, seeding, time limits,
many sessions on one browser, recovery from a crashed page and a killed
browser, and ``check_env`` through a real server process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import psutil
import pytest
from gymnasium.utils.env_checker import check_env
from playwright.async_api import Error as PlaywrightError

import gym_openenv  # noqa: F401 - registers openenv/* ids
from gym_openenv.vector import OpenEnvVectorEnv
from gym_openenv.servers.browsergym.models import BrowserGymAction, BrowserGymObservation
from gym_openenv.servers.browsergym.server.actions import ActionError, parse_actions
from gym_openenv.servers.browsergym.server.browser import shared_browser
from gym_openenv.servers.browsergym.server.environment import BrowserGymEnvironment

ENVIRONMENT = "gym_openenv.servers.browsergym.server.environment:BrowserGymEnvironment"
LINE = re.compile(r'^\s*\[(\d+)\] (\S+)(?: "((?:[^"\\]|\\.)*)")?(.*)$')


# --- reading the page as an agent does ------------------------------------------


def elements_of_text(page_text: str) -> list[tuple[str, str, str, str]]:
    """(bid, role, name, properties) of every line of a page_text."""
    rows = []
    for line in page_text.splitlines():
        match = LINE.match(line)
        assert match, f"unparsable page_text line {line!r}"
        bid, role, name, props = match.groups()
        rows.append((bid, role, (name or "").replace('\\"', '"'), props))
    return rows


def elements(obs: BrowserGymObservation) -> list[tuple[str, str, str, str]]:
    return elements_of_text(obs.text)


def bid_of_text(page_text: str, role: str, name: str | None = None) -> str:
    for bid, r, n, _ in elements_of_text(page_text):
        if r == role and (name is None or n == name):
            return bid
    raise AssertionError(f"no {role} named {name!r} in\n{page_text}")


def bid_of(obs: BrowserGymObservation, role: str, name: str | None = None) -> str:
    return bid_of_text(obs.text, role, name)


def bids_of(obs: BrowserGymObservation, role: str) -> list[str]:
    return [bid for bid, r, _, _ in elements(obs) if r == role]


def quoted(goal: str) -> list[str]:
    return re.findall(r'"([^"]*)"', goal)


# --- scripted solutions: goal + page_text -> the actions that solve the task -------

Solver = Callable[[BrowserGymObservation], list[str]]


def solve_checkboxes(obs: BrowserGymObservation) -> list[str]:
    wanted = re.match(r"Select (.*) and click Submit\.", obs.goal).group(1)
    names = set() if wanted == "nothing" else set(wanted.split(", "))
    actions = [f'check("{bid}")' for bid, role, name, _ in elements(obs) if role == "checkbox" and name in names]
    return actions + [f'click("{bid_of(obs, "button", "Submit")}")']


def solve_login(obs: BrowserGymObservation) -> list[str]:
    user, password = quoted(obs.goal)
    username_box, password_box = bids_of(obs, "textbox")
    return [f'fill("{username_box}", "{user}")\nfill("{password_box}", "{password}")', f'click("{bid_of(obs, "button", "Login")}")']


SOLVERS: dict[str, Solver] = {
    "miniwob.click-test": lambda o: [f'click("{bid_of(o, "button", "Click Me!")}")'],
    "miniwob.click-button": lambda o: [f'click("{bid_of(o, "button", quoted(o.goal)[0])}")'],
    "miniwob.click-link": lambda o: [f'click("{bid_of(o, "span", quoted(o.goal)[0])}")'],
    "miniwob.enter-text": lambda o: [
        f'fill("{bid_of(o, "textbox")}", "{quoted(o.goal)[0]}")',
        f'click("{bid_of(o, "button", "Submit")}")',
    ],
    "miniwob.focus-text": lambda o: [f'focus("{bid_of(o, "textbox")}")'],
    "miniwob.click-checkboxes": solve_checkboxes,
    "miniwob.click-dialog": lambda o: [f'click("{bid_of(o, "button", "Close")}")'],
    "miniwob.choose-list": lambda o: [
        f'select_option("{bid_of(o, "combobox")}", "{re.match(r"Select (.*) from the list", o.goal).group(1)}")',
        f'click("{bid_of(o, "button", "Submit")}")',
    ],
    "miniwob.click-option": lambda o: [
        f'click("{bid_of(o, "radio", re.match(r"Select (.*) and click Submit", o.goal).group(1))}")',
        f'click("{bid_of(o, "button", "Submit")}")',
    ],
    "miniwob.enter-password": lambda o: [
        "\n".join(f'fill("{bid}", "{quoted(o.goal)[0]}")' for bid in bids_of(o, "textbox")),
        f'press("{bid_of(o, "button", "Submit")}", "Enter")',
    ],
    "miniwob.login-user": solve_login,
    "miniwob.click-tab": lambda o: [f'click("{bid_of(o, "link", o.goal.removeprefix("Click on ").rstrip("."))}")'],
    "miniwob.click-button-sequence": lambda o: [
        f'click("{bid_of(o, "button", "ONE")}")',
        f'click("{bid_of(o, "button", "TWO")}")',
    ],
}


def run_episode(env: BrowserGymEnvironment, solver: Solver, seed: int) -> tuple[BrowserGymObservation, list[BrowserGymObservation]]:
    first = env.reset(seed=seed)
    steps = []
    for action in solver(first):
        steps.append(env.step(BrowserGymAction(action_str=action)))
        assert steps[-1].error == "" and not steps[-1].last_action_error, steps[-1].error
    return first, steps


@pytest.fixture
def make_env():
    made = []

    def make(**kwargs) -> BrowserGymEnvironment:
        made.append(BrowserGymEnvironment(**kwargs))
        return made[-1]

    yield make
    for env in made:
        env.close()


# --- tasks ----------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(SOLVERS))
def test_scripted_solution_earns_the_tasks_reward(make_env, task):
    env = make_env(task=task)
    for seed in (0, 1):
        first, steps = run_episode(env, SOLVERS[task], seed)
        assert first.goal and not first.done and first.reward == 0.0
        assert first.screenshot.shape == (210, 160, 3) and first.screenshot.dtype == np.uint8
        assert first.screenshot.std() > 0, "blank screenshot"
        assert first.url.startswith("file://") and first.url.endswith(task.removeprefix("miniwob.") + ".html")
        assert all(not s.done and s.reward == 0.0 for s in steps[:-1])
        assert steps[-1].done and not steps[-1].truncated
        assert steps[-1].reward == 1.0, (task, seed, first.goal, steps[-1].metadata)
        assert steps[-1].metadata["raw_reward"] == 1.0


def test_wrong_button_gets_the_tasks_failure(make_env):
    env = make_env(task="miniwob.click-button")
    obs = env.reset(seed=3)
    target = quoted(obs.goal)[0]
    wrong = next(bid for bid, role, name, _ in elements(obs) if role == "button" and name != target)
    obs = env.step(BrowserGymAction(action_str=f'click("{wrong}")'))
    assert obs.done and obs.reward == -1.0 and obs.error == ""


def test_wrong_text_gets_the_tasks_failure(make_env):
    env = make_env(task="miniwob.enter-text")
    obs = env.reset(seed=0)
    env.step(BrowserGymAction(action_str=f'fill("{bid_of(obs, "textbox")}", "not the name")'))
    obs = env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "button", "Submit")}")'))
    assert obs.done and obs.reward == -1.0


@pytest.mark.parametrize(("mode", "expected"), [("success", (1.0, 0.0)), ("time_scaled", None)])
def test_reward_modes(make_env, mode, expected):
    env = make_env(task="miniwob.click-button", reward_mode=mode)
    obs = env.reset(seed=3)
    obs = env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "button", quoted(obs.goal)[0])}")'))
    if mode == "success":
        assert obs.reward == 1.0
        obs = env.reset(seed=3)
        wrong = next(b for b, r, n, _ in elements(obs) if r == "button" and n != quoted(obs.goal)[0])
        assert env.step(BrowserGymAction(action_str=f'click("{wrong}")')).reward == 0.0
    else:
        # MiniWoB's official reward shrinks with the time taken.
        assert 0.5 < obs.reward < 1.0


def test_step_after_done_does_nothing(make_env):
    env = make_env(task="miniwob.click-test")
    obs = env.reset(seed=0)
    action = BrowserGymAction(action_str=f'click("{bid_of(obs, "button")}")')
    assert env.step(action).reward == 1.0
    again = env.step(action)
    assert again.done and again.reward == 0.0 and "call reset()" in again.error and again.last_action_error


def test_task_time_limit_ends_the_episode_with_failure(make_env):
    env = make_env(task="miniwob.click-test", episode_max_time_ms=200)
    env.reset(seed=0)
    obs = env.step(BrowserGymAction(action_str="noop(400)"))
    assert obs.done and obs.reward == -1.0 and obs.metadata["reward_reason"] == "timed out"


# --- seeding --------------------------------------------------------------------------


def test_same_seed_same_task_across_episodes_and_sessions(make_env):
    env, other = make_env(task="miniwob.click-checkboxes"), make_env(task="miniwob.click-checkboxes")
    first = env.reset(seed=11)
    env.step(BrowserGymAction(action_str=solve_checkboxes(first)[-1]))  # end the episode, then repeat it
    again, elsewhere = env.reset(seed=11), other.reset(seed=11)
    for obs in (again, elsewhere):
        assert (obs.goal, obs.text) == (first.goal, first.text)
        assert np.array_equal(obs.screenshot, first.screenshot)
        assert obs.metadata["task_seed"] == first.metadata["task_seed"]
    goals = {env.reset(seed=s).goal for s in range(6)}
    assert len(goals) > 1, "different seeds should give different tasks"
    # Unseeded resets continue the seeded sequence, so they are reproducible too.
    env.reset(seed=5)
    other.reset(seed=5)
    assert env.reset().goal == other.reset().goal


# --- actions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "click(open('/etc/passwd').read())",
        'click(*["1"])',
        "click(**{'bid': '1'})",
        "import os",
        "x = 1",
        "click",
        'click("1").__class__',
        "click('a1')",
        'fill("1")',
        "",
        "click('1'",
    ],
)
def test_parser_rejects_anything_but_whitelisted_literal_calls(text):
    with pytest.raises(ActionError):
        parse_actions(text)


def test_parser_accepts_browsergym_syntax():
    calls = parse_actions('click(12, button="right", modifiers=["Shift"])\nselect_option("3", ["a", "b"])\nscroll(0, -50.5)')
    assert [(c.name, c.arguments) for c in calls] == [
        ("click", {"bid": "12", "button": "right", "modifiers": ["Shift"]}),
        ("select_option", {"bid": "3", "options": ["a", "b"]}),
        ("scroll", {"delta_x": 0.0, "delta_y": -50.5}),
    ]


def test_bad_actions_are_reported_and_the_episode_goes_on(make_env):
    env = make_env(task="miniwob.click-test", action_timeout_ms=300)
    obs = env.reset(seed=0)
    for text, error in [
        ("os.system('x')", "expected a call"),
        ('clik("2")', "did you mean click?"),
        ('click("999")', "no element with bid '999'"),
        ('press("2", "NotAKey")', "press:"),
        ('click("2", button="side")', "button must be one of"),
        ("noop(1e9)", "wait_ms must be in"),
    ]:
        obs = env.step(BrowserGymAction(action_str=text))
        assert error in obs.error and obs.last_action_error and not obs.done and obs.reward == 0.0
    obs = env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "button")}")'))
    assert obs.error == "" and obs.reward == 1.0


def test_coordinate_and_keyboard_actions(make_env):
    env = make_env(task="miniwob.enter-text")
    obs = env.reset(seed=2)
    name = quoted(obs.goal)[0]
    env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "textbox")}")\nkeyboard_type("{name}")'))
    obs = env.step(BrowserGymAction(action_str="noop(0)"))
    assert f'value="{name}"' in obs.text and "focused" in obs.text
    env2 = make_env(task="miniwob.click-test")
    env2.reset(seed=0)
    blank = env2.step(BrowserGymAction(action_str="mouse_click(5, 200)"))
    assert not blank.done
    # Find the button's pixels (light grey on white) and click their centre.
    grey = np.all(np.abs(blank.screenshot.astype(int) - 239) < 4, axis=-1)
    ys, xs = np.nonzero(grey[50:])
    obs = env2.step(BrowserGymAction(action_str=f"mouse_click({xs.mean():.0f}, {ys.mean() + 50:.0f})"))
    assert obs.done and obs.reward == 1.0


# --- configuration --------------------------------------------------------------------


def test_viewport_sets_the_screenshot_space(make_env):
    env = make_env(task="miniwob.click-test", viewport=[320, 240])
    assert env.field_spaces()["observation"]["screenshot"].shape == (240, 320, 3)
    assert env.reset(seed=0).screenshot.shape == (240, 320, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "miniwob.click-tst"}, "did you mean miniwob.click-test"),
        ({"task": "click-test"}, "miniwob.<name>|like 'miniwob.click-test'"),
        ({"viewport": (160,)}, "viewport"),
        ({"reward_mode": "shaped"}, "reward_mode"),
        ({"episode_max_time_ms": 0}, "episode_max_time_ms"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BrowserGymEnvironment(**kwargs)


# --- one browser, many sessions, failures ------------------------------------------------


def test_sessions_share_one_browser_and_run_concurrently(make_env):
    browser = shared_browser()
    envs = [make_env(task="miniwob.click-button") for _ in range(8)]
    envs[0].reset(seed=0)  # the browser is running before we count launches
    launches = browser.launches
    rewards = [None] * len(envs)

    def play(i: int) -> None:
        _, steps = run_episode(envs[i], SOLVERS["miniwob.click-button"], seed=i)
        rewards[i] = steps[-1].reward

    threads = [threading.Thread(target=play, args=(i,)) for i in range(len(envs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert rewards == [1.0] * len(envs)
    assert browser.launches == launches
    assert len({id(env._page.context) for env in envs}) == len(envs)


def test_crashed_page_truncates_the_episode_and_reset_recovers(make_env):
    env = make_env(task="miniwob.click-test")
    env.reset(seed=0)
    page = env._page.page

    async def crash() -> None:
        # chrome://crash kills the renderer; the navigation itself fails.
        with contextlib.suppress(PlaywrightError):
            await page.goto("chrome://crash", timeout=5000)

    shared_browser().run(crash(), timeout=10)
    obs = env.step(BrowserGymAction(action_str="noop(0)"))
    assert obs.done and obs.truncated and "browser failure" in obs.error
    obs = env.reset(seed=0)
    assert obs.metadata["browser_restarted"] == "the page crashed"
    obs = env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "button")}")'))
    assert obs.reward == 1.0


def browser_pid() -> int:
    """The live Chromium browser process: a chromium descendant without ``--type=``
    (renderers, GPU and utility processes have one)."""
    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        # Renderers of closed pages exit (or linger as zombies) while we look.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            alive = proc.status() != psutil.STATUS_ZOMBIE and "chrom" in proc.name()
            if alive and not any(arg.startswith("--type=") for arg in proc.cmdline()):
                found.append(proc.pid)
    assert len(found) == 1, found
    return found[0]


def test_killed_browser_is_relaunched_for_every_session(make_env):
    browser = shared_browser()
    envs = [make_env(task="miniwob.click-test") for _ in range(2)]
    for env in envs:
        env.reset(seed=0)
    launches = browser.launches
    os.kill(browser_pid(), signal.SIGKILL)
    obs = envs[0].step(BrowserGymAction(action_str="noop(0)"))
    assert obs.done and obs.truncated and obs.metadata["browser_failure"]
    for env in envs:
        obs = env.reset(seed=0)
        assert "browser_restarted" in obs.metadata
        assert env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "button")}")')).reward == 1.0
    assert browser.launches == launches + 1


def test_killed_playwright_driver_is_restarted(make_env):
    env = make_env(task="miniwob.click-test")
    env.reset(seed=0)
    drivers = [
        p for p in psutil.Process(os.getpid()).children() if "chrom" not in p.name() and "playwright" in " ".join(p.cmdline())
    ]
    assert len(drivers) == 1, drivers
    os.kill(drivers[0].pid, signal.SIGKILL)  # takes its Chromium down with it
    obs = env.step(BrowserGymAction(action_str="noop(0)"))
    assert obs.done and obs.truncated and obs.metadata["browser_failure"]
    obs = env.reset(seed=0)
    assert "browser_restarted" in obs.metadata
    assert env.step(BrowserGymAction(action_str=f'click("{bid_of(obs, "button")}")')).reward == 1.0


# --- through a real server process ---------------------------------------------------------


def test_check_env_through_gym_make():
    env = gym.make("openenv/browsergym-v0", task="miniwob.click-button")
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, info = env.reset(seed=4)
        assert set(obs) == {"goal", "text", "screenshot", "error"}
        assert obs["screenshot"].shape == (210, 160, 3) and info["url"].endswith("click-button.html")
        button = bid_of_text(obs["text"], "button", quoted(obs["goal"])[0])
        obs, reward, terminated, truncated, info = env.step(f'click("{button}")')
        assert (reward, terminated, truncated) == (1.0, True, False)
    finally:
        env.close()


def test_vector_env_solves_tasks_in_batched_sessions():
    envs = OpenEnvVectorEnv(ENVIRONMENT, num_envs=3, task="miniwob.click-test")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["screenshot"].shape == (3, 210, 160, 3)
        actions = tuple(f'click("{bid_of_text(text, "button")}")' for text in obs["text"])
        _, reward, terminated, truncated, _ = envs.step(actions)
        assert reward.tolist() == [1.0, 1.0, 1.0] and terminated.all() and not truncated.any()
    finally:
        envs.close()
