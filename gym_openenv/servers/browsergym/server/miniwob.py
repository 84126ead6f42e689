"""MiniWoB++ tasks as shipped in the ``miniwob`` package, and their scoring.

Every task is one HTML page under ``miniwob/html/miniwob/`` that includes
MiniWoB's ``core/core.js``. The page generates a problem in
``core.startEpisodeReal()`` from ``Math.random`` (which ``Math.seedrandom``
seeds), and scores it by calling ``core.endEpisode(reward, time_proportional,
reason)``, which sets the globals read here:

* ``WOB_DONE_GLOBAL``: the episode is over (success, failure or time out);
* ``WOB_RAW_REWARD_GLOBAL``: the task's reward in [-1, 1] (partial credit on
  some tasks), without MiniWoB's time penalty;
* ``WOB_REWARD_GLOBAL``: the same reward scaled by the time left (MiniWoB's
  official reward);
* ``WOB_REWARD_REASON``: the task's explanation, when it gives one.

This is what the ``miniwob`` package's Selenium driver reads too.
"""

from __future__ import annotations

import difflib
import pathlib
from dataclasses import dataclass

import miniwob

__all__ = ["HTML_DIR", "REWARD_MODES", "Score", "Task", "list_tasks"]

HTML_DIR = pathlib.Path(miniwob.__file__).parent / "html" / "miniwob"

#: How a finished episode's reward is computed from the page's globals.
REWARD_MODES = ("raw", "time_scaled", "success")

#: Starts an episode: seeds Math.random, optionally overrides the task's time
#: limit, then generates the problem. Returns whether the task is ready (some
#: tasks load data asynchronously and set WOB_TASK_READY later).
START_EPISODE_JS = """([seed, maxTimeMs]) => {
  // Focus left over from the previous episode would show in the page text.
  if (document.activeElement) { document.activeElement.blur(); }
  Math.seedrandom(seed);
  if (maxTimeMs !== null) { core.EPISODE_MAX_TIME = maxTimeMs; }
  core.startEpisodeReal();
  return WOB_TASK_READY;
}"""

SCORE_JS = """() => ({
  done: WOB_DONE_GLOBAL,
  raw: WOB_RAW_REWARD_GLOBAL,
  timeScaled: WOB_REWARD_GLOBAL,
  reason: WOB_REWARD_REASON === null ? null : String(WOB_REWARD_REASON),
})"""

GOAL_JS = """() => {
  const goal = core.getUtterance();
  return typeof goal === 'string' ? goal : goal.utterance;
}"""


def list_tasks() -> list[str]:
    """Ids of every MiniWoB++ task page, e.g. ``miniwob.click-test``."""
    return sorted(f"miniwob.{path.stem}" for path in HTML_DIR.glob("*.html"))


@dataclass(frozen=True)
class Task:
    """One MiniWoB++ task page."""

    id: str
    path: pathlib.Path

    @classmethod
    def from_id(cls, task_id: str) -> Task:
        """``miniwob.<name>`` -> its page; a clear error for unknown ids."""
        known = list_tasks()
        if task_id not in known:
            hint = difflib.get_close_matches(task_id, known, n=3)
            suggestion = f"; did you mean {', '.join(hint)}?" if hint else f"; known: {', '.join(known[:8])}, ..."
            raise ValueError(f"task must be a MiniWoB++ task id like 'miniwob.click-test', got {task_id!r}{suggestion}")
        return cls(task_id, HTML_DIR / f"{task_id.removeprefix('miniwob.')}.html")

    @property
    def url(self) -> str:
        return self.path.as_uri()


@dataclass(frozen=True)
class Score:
    """The page's verdict on the current episode."""

    done: bool
    raw: float
    time_scaled: float
    reason: str | None

    def reward(self, mode: str) -> float:
        """The reward under ``mode`` (see :data:`REWARD_MODES`); 0 until done."""
        if not self.done:
            return 0.0
        if mode == "raw":
            return float(self.raw)
        if mode == "time_scaled":
            return float(self.time_scaled)
        return 1.0 if self.raw > 0 else 0.0
