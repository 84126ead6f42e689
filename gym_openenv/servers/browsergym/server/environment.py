"""BrowserGym on real Chromium: MiniWoB++ tasks driven by BrowserGym actions.

Each session owns one browser context and page in the process-wide Chromium
(:mod:`.browser`). A reset seeds the task page's ``Math.random`` and starts a
MiniWoB episode on it; a step runs the action's calls (:mod:`.actions`) and
reads the task's own verdict from the page (:mod:`.miniwob`).

Example:
    >>> env = BrowserGymEnvironment(task="miniwob.click-test")
    >>> obs = env.reset(seed=0)
    >>> obs.goal, obs.screenshot.shape
    ('Click the button.', (210, 160, 3))
    >>> print(obs.text)
    [1] div "Click the button."
    [2] button "Click Me!" clickable
    >>> obs = env.step(BrowserGymAction(action_str='click("2")'))
    >>> obs.done, obs.reward
    (True, 1.0)
    >>> env.close()
"""

from __future__ import annotations

import io
import pathlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image
from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces
from gym_openenv.spaces import DEFAULT_CHARSET
from gym_openenv.servers.browsergym.models import (
    DEFAULT_VIEWPORT,
    DOM_TEXT_MAX_LENGTH,
    ERROR_MAX_LENGTH,
    GOAL_MAX_LENGTH,
    BrowserGymAction,
    BrowserGymObservation,
    BrowserGymState,
    screenshot_space,
)
from gym_openenv.servers.browsergym.server.actions import (
    MAX_NOOP_WAIT_MS,
    ActionCall,
    ActionContext,
    ActionError,
    execute,
    parse_actions,
)
from gym_openenv.servers.browsergym.server.browser import (
    BrowserFailure,
    SharedBrowser,
    deadline,
    first_line,
    shared_browser,
)
from gym_openenv.servers.browsergym.server.miniwob import (
    GOAL_JS,
    REWARD_MODES,
    SCORE_JS,
    START_EPISODE_JS,
    Score,
    Task,
)

__all__ = ["BrowserGymEnvironment"]

PAGE_TEXT_JS = (pathlib.Path(__file__).parent / "page_text.js").read_text()

# Deadlines for whole calls into the browser; Playwright calls inside have
# their own shorter timeouts, these only catch a browser that stopped answering.
_OPEN_TIMEOUT_S = 60.0
_EPISODE_START_TIMEOUT_S = 30.0
# A reset may first wait for a page-opening slot behind other sessions
# (see SharedBrowser.opening); this bounds the whole call.
_RESET_TIMEOUT_S = 600.0
_STEP_BASE_TIMEOUT_S = 15.0
_CLOSE_TIMEOUT_S = 10.0
_PAGE_TIMEOUT_MS = 10_000

_CHARSET = frozenset(DEFAULT_CHARSET)
#: The browser window MiniWoB's own driver uses; its task area is the top-left 160x210.
_MINIWOB_WINDOW = (500, 320)


@dataclass
class _Snapshot:
    """What one look at the page gives, before it becomes an observation."""

    dom_text: str
    screenshot_png: bytes
    score: Score
    url: str


class _TaskPage:
    """One session's context and page, opened on a task.

    Usable only while its page is alive and the browser it was opened in is
    still the running one.
    """

    def __init__(self, context: BrowserContext, page: Page, launch: int):
        self.context = context
        self.page = page
        self.launch = launch
        self.crashed = False
        page.on("crash", self._on_crash)

    def _on_crash(self, _page: Page) -> None:
        self.crashed = True

    @classmethod
    async def open(cls, browser: SharedBrowser, task: Task, viewport: tuple[int, int]) -> _TaskPage:
        # The window is at least MiniWoB's (500x320) so that task widgets never
        # scroll the page; screenshots crop the top-left viewport from it.
        window = {"width": max(viewport[0], _MINIWOB_WINDOW[0]), "height": max(viewport[1], _MINIWOB_WINDOW[1])}
        context = await browser.new_context(viewport=window, device_scale_factor=1)
        context.set_default_timeout(_PAGE_TIMEOUT_MS)
        try:
            page = await context.new_page()
            task_page = cls(context, page, browser.launches)
            await page.goto(task.url, wait_until="load")
            await page.wait_for_function("() => typeof core !== 'undefined' && typeof genProblem === 'function'")
        except BaseException:
            # Failed or cancelled by a deadline: do not leak the context.
            await _close_context(context)
            raise
        return task_page

    def usable(self, browser: SharedBrowser) -> bool:
        return self.failure(browser) is None

    def failure(self, browser: SharedBrowser) -> str | None:
        """Why this page can no longer be used, or None."""
        if self.crashed:
            return "the page crashed"
        if self.page.is_closed():
            return "the page was closed"
        if self.launch != browser.launches or not (self.context.browser and self.context.browser.is_connected()):
            return "the browser crashed and was relaunched"
        return None

    async def close(self) -> None:
        await _close_context(self.context)


async def _close_context(context: BrowserContext) -> None:
    try:
        await context.close()
    except PlaywrightError:
        # The context died with its browser; nothing is left to release.
        return


class BrowserGymEnvironment(Environment[BrowserGymAction, BrowserGymObservation, BrowserGymState]):
    """A MiniWoB++ task in headless Chromium, observed as text and pixels.

    Args:
        task: MiniWoB++ task id, ``miniwob.<name>`` (e.g. ``miniwob.click-test``).
        viewport: ``(width, height)`` of the screenshot, cropped from the
            page's top-left corner; the default is MiniWoB's task area,
            160x210. The browser window is at least MiniWoB's 500x320.
        reward_mode: ``"raw"``: the task's reward in [-1, 1] (partial credit
            on some tasks) with no time penalty; ``"time_scaled"``: MiniWoB's
            official reward, scaled by the time left; ``"success"``: 1 if the
            raw reward is positive, else 0 (BrowserGym's MiniWoB reward).
        episode_max_time_ms: the task's wall-clock limit; None keeps the
            task's own (10 s for most). Timing out ends the episode with the
            task's failure reward.
        action_timeout_ms: how long an element action waits for its element
            to become actionable before it fails with ``error``.
    """

    action_type = BrowserGymAction
    observation_type = BrowserGymObservation
    state_type = BrowserGymState

    def __init__(
        self,
        task: str = "miniwob.click-test",
        viewport: Sequence[int] = DEFAULT_VIEWPORT,
        reward_mode: str = "raw",
        episode_max_time_ms: int | None = None,
        action_timeout_ms: float = 3000.0,
    ):
        self._task = Task.from_id(task)
        self._viewport = _check_viewport(viewport)
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if episode_max_time_ms is not None and (isinstance(episode_max_time_ms, bool) or episode_max_time_ms <= 0):
            raise ValueError(f"episode_max_time_ms must be a positive number of milliseconds or None, got {episode_max_time_ms!r}")
        if action_timeout_ms <= 0:
            raise ValueError(f"action_timeout_ms must be positive, got {action_timeout_ms!r}")
        self._reward_mode = reward_mode
        self._episode_max_time_ms = episode_max_time_ms
        self._action_timeout_ms = float(action_timeout_ms)
        self._browser = shared_browser()
        self._page: _TaskPage | None = None
        # Why the page must be reopened at the next reset (a failure seen by a call), or None.
        self._page_failure: str | None = None
        self._rng = np.random.default_rng()
        self._state = BrowserGymState(task_name=task)
        self._goal = ""
        self._last: BrowserGymObservation | None = None

    # --- Environment --------------------------------------------------------

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> BrowserGymObservation:
        if kwargs:
            raise ValueError(f"reset() takes no options besides seed and episode_id, got {sorted(kwargs)}")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        task_seed = int(self._rng.integers(2**31 - 1))
        self._state = BrowserGymState(
            episode_id=episode_id or str(uuid.uuid4()), step_count=0, task_name=self._task.id, task_seed=task_seed
        )
        metadata: dict[str, Any] = {"task_seed": task_seed}
        try:
            goal, snapshot, reopened = self._browser.run(self._reset_async(task_seed), _RESET_TIMEOUT_S)
        except BrowserFailure as err:
            # A crashed page or browser must not end the session: reopen once.
            self._page_failure = str(err)
            goal, snapshot, _ = self._browser.run(self._reset_async(task_seed), _RESET_TIMEOUT_S)
            reopened = str(err)
        if reopened:
            metadata["browser_restarted"] = reopened
        self._goal = _fit(goal, GOAL_MAX_LENGTH)
        self._last = self._observation(snapshot, error="", metadata=metadata)
        return self._last

    def step(self, action: BrowserGymAction) -> BrowserGymObservation:
        if self._last is None:
            raise RuntimeError("call reset() before step()")
        self._state.step_count += 1
        if self._last.done:
            return self._repeat_last("the episode is over; call reset()")
        try:
            calls = parse_actions(action.action_str)
        except ActionError as err:
            calls, parse_error = [], str(err)
        else:
            parse_error = ""
        timeout = _STEP_BASE_TIMEOUT_S + len(calls) * (self._action_timeout_ms + MAX_NOOP_WAIT_MS) / 1000
        try:
            snapshot, error = self._browser.run(self._step_async(calls), timeout)
        except BrowserFailure as err:
            # The page or browser died mid-episode: the episode is lost (truncated);
            # the next reset() opens a fresh page.
            self._page_failure = str(err)
            self._last = BrowserGymObservation(
                goal=self._goal,
                screenshot=np.zeros(screenshot_space(self._viewport).shape, np.uint8),
                error=_fit(f"browser failure: {err}; call reset() to continue", ERROR_MAX_LENGTH),
                done=True,
                truncated=True,
                reward=0.0,
                metadata={"task_seed": self._state.task_seed, "browser_failure": str(err)},
            )
            return self._last
        metadata = {"task_seed": self._state.task_seed}
        if snapshot.score.done:
            metadata.update(raw_reward=snapshot.score.raw, reward_reason=snapshot.score.reason)
        self._last = self._observation(snapshot, error=parse_error or error, metadata=metadata)
        return self._last

    @property
    def state(self) -> BrowserGymState:
        return self._state

    def close(self) -> None:
        if self._page is None:
            return
        page, self._page = self._page, None
        try:
            self._browser.run(page.close(), _CLOSE_TIMEOUT_S)
        except BrowserFailure:
            # The browser is gone or stuck; its contexts go with it.
            return

    def field_spaces(self) -> FieldSpaces:
        return {"observation": {"screenshot": screenshot_space(self._viewport)}}

    def metadata(self) -> EnvironmentMetadata:
        return replace(
            super().metadata(),
            documentation_url="https://github.com/ServiceNow/BrowserGym",
            extra={
                "task": self._task.id,
                "viewport": list(self._viewport),
                "reward_mode": self._reward_mode,
            },
        )

    # --- browser side (run on the browser loop) ----------------------------

    async def _reset_async(self, task_seed: int) -> tuple[str, _Snapshot, str | None]:
        page, reopened = await self._usable_page()
        goal, snapshot = await deadline(self._start_episode(page, task_seed), _EPISODE_START_TIMEOUT_S, "starting the episode")
        return goal, snapshot, reopened

    async def _start_episode(self, page: Page, task_seed: int) -> tuple[str, _Snapshot]:
        # Park the mouse so hover styles from the last episode do not carry over.
        await page.mouse.move(0, 0)
        ready = await page.evaluate(START_EPISODE_JS, [task_seed, self._episode_max_time_ms])
        if not ready:
            await page.wait_for_function("() => WOB_TASK_READY")
        goal = await page.evaluate(GOAL_JS)
        return goal, await self._snapshot(page, reset_bids=True)

    async def _step_async(self, calls: list[ActionCall]) -> tuple[_Snapshot, str]:
        assert self._page is not None
        page = self._page.page
        context = ActionContext(page, self._action_timeout_ms)
        error = ""
        for call in calls:
            try:
                await execute(context, call)
            except ActionError as err:
                error = str(err)
                break
            except PlaywrightError as err:
                if not self._page.usable(self._browser):
                    raise
                error = f"{call.name}: {first_line(err.message)}"
                break
        return await self._snapshot(page, reset_bids=False), error

    async def _usable_page(self) -> tuple[Page, str | None]:
        """The session's page, reopened if it died; with why it was reopened, if it was."""
        reopened = None
        if self._page is not None and (self._page_failure or not self._page.usable(self._browser)):
            reopened = self._page.failure(self._browser) or self._page_failure
            await self._page.close()
            self._page = None
        if self._page is None:
            async with self._browser.opening():
                self._page = await deadline(
                    _TaskPage.open(self._browser, self._task, self._viewport), _OPEN_TIMEOUT_S, "opening the task page"
                )
            self._page_failure = None
        return self._page.page, reopened

    async def _snapshot(self, page: Page, reset_bids: bool) -> _Snapshot:
        score = await page.evaluate(SCORE_JS)
        dom_text = await page.evaluate(PAGE_TEXT_JS, reset_bids)
        width, height = self._viewport
        png = await page.screenshot(type="png", clip={"x": 0, "y": 0, "width": width, "height": height})
        return _Snapshot(
            dom_text=dom_text,
            screenshot_png=png,
            score=Score(bool(score["done"]), float(score["raw"]), float(score["timeScaled"]), score["reason"]),
            url=page.url,
        )

    # --- observations -------------------------------------------------------

    def _observation(self, snapshot: _Snapshot, error: str, metadata: dict[str, Any]) -> BrowserGymObservation:
        screenshot = np.asarray(Image.open(io.BytesIO(snapshot.screenshot_png)).convert("RGB"))
        return BrowserGymObservation(
            goal=self._goal,
            text=_fit(snapshot.dom_text, DOM_TEXT_MAX_LENGTH),
            screenshot=screenshot,
            error=_fit(error, ERROR_MAX_LENGTH),
            url=snapshot.url,
            done=snapshot.score.done,
            reward=snapshot.score.reward(self._reward_mode),
            metadata=metadata,
        )

    def _repeat_last(self, error: str) -> BrowserGymObservation:
        assert self._last is not None
        last = self._last
        return BrowserGymObservation(
            goal=last.goal,
            text=last.text,
            screenshot=last.screenshot,
            error=error,
            url=last.url,
            done=True,
            truncated=last.truncated,
            reward=0.0,
            metadata=dict(last.metadata),
        )


def _check_viewport(viewport: Sequence[int]) -> tuple[int, int]:
    if (
        len(viewport) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in viewport)
        or not all(16 <= v <= 4096 for v in viewport)
    ):
        raise ValueError(f"viewport must be (width, height) in pixels, each in [16, 4096], got {viewport!r}")
    return int(viewport[0]), int(viewport[1])


def _fit(text: str, max_length: int) -> str:
    """Keep text inside its Text space: characters outside the charset become '?'."""
    text = text[:max_length]
    if all(ch in _CHARSET for ch in text):
        return text
    return "".join(ch if ch in _CHARSET else "?" for ch in text)
