"""``AtariEnvironment``: one ALE game per session, frame-exact with ``ALE/<Game>-v5``.

Each session wraps ale-py's own gymnasium environment, ``ale_py.env.AtariEnv``,
instead of re-implementing it on ``ALEInterface``: seeding (the ALE seed is
derived from a ``SeedSequence`` and the ROM reloaded), sticky actions, the
frameskip loop and terminal/truncation flags then stay exactly those of
``gym.make("ALE/Pong-v5")`` for any seed and action sequence, including the
RNG carried across episodes when ``reset`` gets no seed.

Example:
    >>> env = AtariEnvironment(game="breakout")
    >>> env.field_spaces()["action"]["action_id"]
    Discrete(4)
    >>> obs = env.reset(seed=0)
    >>> obs.screen.shape, obs.lives
    ((210, 160, 3), 5)
    >>> obs = env.step(AtariAction(action_id=1))
    >>> obs.reward, obs.done
    (0.0, False)
"""

from __future__ import annotations

import difflib
import re
import uuid
from dataclasses import replace
from typing import Any, Literal

import ale_py
import numpy as np
from ale_py import roms
from ale_py.env import AtariEnv

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces
from gym_openenv.servers.atari.models import AtariAction, AtariObservation, AtariState

__all__ = ["AtariEnvironment", "rom_id"]

OBS_TYPES = ("rgb", "grayscale", "ram")

#: ``ALE/<Game>-v5`` truncates after 108,000 frames (30 minutes of play).
V5_MAX_NUM_FRAMES_PER_EPISODE = 108_000
#: what an action id may be (checked with isinstance: a bool passes, as the int it is)
_ACTION_ID_TYPES = (int, np.integer)


def rom_id(game: str) -> str:
    """ALE's snake_case ROM id for ``game``: "Pong" is "pong"; "SpaceInvaders",
    "space-invaders" and "space_invaders" are all "space_invaders".

    Raises:
        ValueError: if ALE has no such ROM, with the closest names.
    """
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", game.strip()).replace("-", "_").lower()
    known = roms.get_all_rom_ids()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"game: ALE has no ROM {game!r}.{hint} (ale_py.roms.get_all_rom_ids() lists all {len(known)})")
    return name


class AtariEnvironment(Environment[AtariAction, AtariObservation, AtariState]):
    """An Atari 2600 game with ``ALE/<Game>-v5``'s settings and defaults.

    Args:
        game: any ALE ROM id ("pong", "breakout", "space_invaders", ...;
            PascalCase works too).
        obs_type: "rgb" (210, 160, 3), "grayscale" (210, 160) or "ram" (128,).
        frameskip: frames per step, or ``(low, high)`` for a stochastic skip
            drawn from ``[low, high)`` per step.
        repeat_action_probability: sticky actions (Machado et al., 2018).
        full_action_space: all 18 actions instead of the game's minimal set.
        mode: game mode (None: the ROM's default).
        difficulty: game difficulty (None: the ROM's default).
        max_num_frames_per_episode: frames before the episode is truncated
            (v5 uses 108,000; None for no limit).
        render_mode: "rgb_array" enables :meth:`render`.
    """

    action_type = AtariAction
    observation_type = AtariObservation
    state_type = AtariState

    def __init__(
        self,
        game: str = "pong",
        obs_type: Literal["rgb", "grayscale", "ram"] = "rgb",
        frameskip: int | tuple[int, int] = 4,
        repeat_action_probability: float = 0.25,
        full_action_space: bool = False,
        mode: int | None = None,
        difficulty: int | None = None,
        max_num_frames_per_episode: int | None = V5_MAX_NUM_FRAMES_PER_EPISODE,
        render_mode: Literal["rgb_array"] | None = None,
    ):
        game = rom_id(game)
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type: {obs_type!r} is not one of {OBS_TYPES}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: {render_mode!r} is not supported; use 'rgb_array' or None")
        frameskip = _checked_frameskip(frameskip)
        if not 0.0 <= repeat_action_probability <= 1.0:
            raise ValueError(f"repeat_action_probability: {repeat_action_probability!r} is not in [0, 1]")
        try:
            self._env = AtariEnv(
                game=game,
                mode=mode,
                difficulty=difficulty,
                obs_type=obs_type,
                frameskip=frameskip,
                repeat_action_probability=repeat_action_probability,
                full_action_space=full_action_space,
                max_num_frames_per_episode=max_num_frames_per_episode,
                render_mode=render_mode,
            )
        except RuntimeError as e:  # how ALE rejects a mode or difficulty the ROM lacks
            raise ValueError(_mode_error(game, mode, difficulty, e)) from None
        self._num_actions = int(self._env.action_space.n)
        self._settings = dict(
            game_name=game,
            obs_type=obs_type,
            full_action_space=full_action_space,
            mode=mode,
            difficulty=difficulty,
            repeat_action_probability=repeat_action_probability,
            frameskip=list(frameskip) if isinstance(frameskip, tuple) else frameskip,
        )
        self._state = AtariState(**self._settings)

    # --- Environment API -------------------------------------------------------

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> AtariObservation:
        """Start a new game. Without a seed the RNGs carry on from the last
        episode (gymnasium semantics); with one, the ALE is reseeded and the
        ROM reloaded, as ``AtariEnv.reset(seed=...)`` does. ``options`` is
        passed on to ``AtariEnv.reset``, which has none."""
        screen, info = self._env.reset(seed=seed, options=options)
        self._state = AtariState(**self._settings, episode_id=episode_id or uuid.uuid4().hex)
        return self._observation(screen, info, reward=None, terminated=False, truncated=False)

    def step(self, action: AtariAction) -> AtariObservation:
        action_id = action.action_id
        # AtariEnv indexes a Python list: a negative id would silently pick another action.
        if not (isinstance(action_id, _ACTION_ID_TYPES) and 0 <= action_id < self._num_actions):
            raise ValueError(f"action_id: {action_id!r} is not in Discrete({self._num_actions}) for {self._state.game_name}")
        screen, reward, terminated, truncated, info = self._env.step(int(action_id))
        self._state.step_count += 1
        return self._observation(screen, info, reward, terminated, truncated)

    @property
    def state(self) -> AtariState:
        return self._state

    def close(self) -> None:
        self._env.close()

    def observe_into(self, buffers: dict[str, np.ndarray]) -> None:
        """Render the screen straight into ``buffers["screen"]`` (the session's
        shared-memory slot, as the mapping holds it at each step): ALE writes the
        frame there, nothing is copied."""
        out = buffers.get("screen")
        space, env = self._env.observation_space, self._env
        draw = {"rgb": env.ale.getScreenRGB, "grayscale": env.ale.getScreenGrayscale}.get(env._obs_type)
        if out is None or out.shape != space.shape or out.dtype != space.dtype or env.sound_obs or draw is None:
            env.__dict__.pop("_get_obs", None)  # back to fresh arrays (the slot was taken back)
            return

        def render_into_slot() -> np.ndarray:  # AtariEnv's own _get_obs, with ALE's out= argument
            slot = buffers["screen"]  # this turn's slot (the server swaps slots of this same shape)
            draw(slot)
            return slot

        env._get_obs = render_into_slot

    def field_spaces(self) -> FieldSpaces:
        return {
            "action": {"action_id": self._env.action_space},
            "observation": {"screen": self._env.observation_space},
        }

    def metadata(self) -> EnvironmentMetadata:
        return replace(
            super().metadata(),
            documentation_url="https://ale.farama.org/environments/",
            extra={
                "game": self._state.game_name,
                "ale_py_version": ale_py.__version__,
                "action_meanings": self._env.get_action_meanings(),
                "render_fps": self._env.metadata["render_fps"],
            },
        )

    # --- extras beyond the Environment contract ---------------------------------

    def render(self) -> np.ndarray:
        """The current RGB screen, (210, 160, 3) uint8; needs ``render_mode="rgb_array"``."""
        if self._env.render_mode != "rgb_array":
            raise ValueError("render_mode: render() needs AtariEnvironment(render_mode='rgb_array')")
        return self._env.render()

    @property
    def action_meanings(self) -> list[str]:
        """Names of the actions, by ``action_id`` ("NOOP", "FIRE", ...)."""
        return self._env.get_action_meanings()

    # --- helpers ------------------------------------------------------------------

    def _observation(
        self, screen: np.ndarray, info: dict[str, Any], reward: float | None, terminated: bool, truncated: bool
    ) -> AtariObservation:
        state = self._state
        state.lives = lives = int(info["lives"])
        state.episode_frame_number = episode_frame_number = int(info["episode_frame_number"])
        state.frame_number = frame_number = int(info["frame_number"])
        # AtariObservation's own fields by position (keywords cost more, on every step)
        return AtariObservation(
            screen,
            list(screen.shape),  # screen_shape
            list(range(self._num_actions)),  # legal_actions
            lives,
            episode_frame_number,
            frame_number,
            reward=reward,
            done=bool(terminated or truncated),
            truncated=bool(truncated),
        )


def _checked_frameskip(frameskip: Any) -> int | tuple[int, int]:
    # JSON turns a (low, high) tuple into a list; AtariEnv accepts only int or tuple.
    if isinstance(frameskip, list):
        frameskip = tuple(frameskip)
    if isinstance(frameskip, bool) or not isinstance(frameskip, (int, tuple)):
        raise ValueError(f"frameskip: {frameskip!r} is neither an int nor a (low, high) pair")
    if isinstance(frameskip, int) and frameskip <= 0:
        raise ValueError(f"frameskip: {frameskip} must be positive")
    if isinstance(frameskip, tuple) and not (
        len(frameskip) == 2 and all(isinstance(f, int) for f in frameskip) and 0 < frameskip[0] < frameskip[1]
    ):
        raise ValueError(f"frameskip: {frameskip!r} must be a pair (low, high) with 0 < low < high")
    return frameskip


def _mode_error(game: str, mode: int | None, difficulty: int | None, error: RuntimeError) -> str:
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(roms.get_rom_path(game))
    return (
        f"mode/difficulty: ALE refused mode={mode!r}, difficulty={difficulty!r} for {game} ({error}); "
        f"available modes {ale.getAvailableModes()}, difficulties {ale.getAvailableDifficulties()}"
    )
