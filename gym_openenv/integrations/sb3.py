"""Stable-Baselines3 ``VecEnv`` over an :class:`~gym_openenv.vector.OpenEnvVectorEnv`.

SB3 takes it directly, no ``SubprocVecEnv``: the sessions already run in
server processes. SB3 resets finished episodes in the same step and keeps the
last observation in ``info["terminal_observation"]``, so the vector env runs in
``AutoresetMode.SAME_STEP``.

One call gives a ready SB3 ``VecEnv`` for any id, as SB3's own ``make_vec_env`` does:

Example:
    >>> from stable_baselines3 import PPO
    >>> from gym_openenv.integrations.sb3 import make_sb3_vec_env
    >>> venv = make_sb3_vec_env("openenv/gym-v0", n_envs=2, env_id="CartPole-v1", num_servers=1)
    >>> venv.num_envs, venv.observation_space.shape
    (2, (4,))
    >>> model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32).learn(32)
    >>> venv.close()

SB3 is imported only when this module is.
"""

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from gym_openenv.vector import OpenEnvVectorEnv

__all__ = ["SB3VecEnv", "make_sb3_vec_env"]


class SB3VecEnv(VecEnv):
    """Adapts an ``OpenEnvVectorEnv`` (made with ``autoreset_mode=SAME_STEP``) to SB3's API."""

    def __init__(self, venv: OpenEnvVectorEnv):
        venv = getattr(venv, "unwrapped", venv)
        if not isinstance(venv, OpenEnvVectorEnv):
            raise TypeError(f"SB3VecEnv wraps an OpenEnvVectorEnv, got {type(venv).__name__}")
        if venv.autoreset_mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                "SB3 resets finished episodes in the same step: make the vector env with "
                "autoreset_mode=AutoresetMode.SAME_STEP, or let make_sb3_vec_env(id, n_envs) do it"
            )
        self.venv = venv
        self._seeds: list[int | None] | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self) -> VecEnvObs:
        obs, info = self.venv.reset(seed=self._seeds)
        self._seeds = None
        self.reset_infos = _unbatch(info, self.num_envs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step_wait()
        dones = terminated | truncated
        infos = _unbatch(info, self.num_envs)
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos[i].update(info["final_info"][i] or {})
        return obs, rewards.astype(np.float32), dones, infos

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self._seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        return [None] * self.num_envs

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.venv, attr_name, None) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("remote sessions have no per-env methods to call")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def make_sb3_vec_env(env_id: str, /, n_envs: int = 1, *, monitor: bool = True, **kwargs: Any) -> VecEnv:
    """A ready SB3 ``VecEnv`` of ``n_envs`` sessions of ``env_id`` (any ``openenv/*`` id).

    Args:
        env_id: a registered id, e.g. ``"openenv/atari-v0"`` (positional, so ``openenv/gym-v0`` still takes its own ``env_id=``).
        n_envs: sessions, batched over the id's servers.
        monitor: wrap in SB3's ``VecMonitor`` so episode returns and lengths reach the logger.
        **kwargs: passed to ``gym.make_vec`` (``provider=``, ``num_servers=``, environment arguments...).
    """
    if kwargs.get("autoreset_mode", AutoresetMode.SAME_STEP) not in (AutoresetMode.SAME_STEP, "SameStep"):
        raise ValueError(f"SB3 needs SAME_STEP autoreset; got autoreset_mode={kwargs['autoreset_mode']!r}")
    kwargs["autoreset_mode"] = AutoresetMode.SAME_STEP
    venv: VecEnv = SB3VecEnv(gymnasium.make_vec(env_id, num_envs=n_envs, **kwargs))
    return VecMonitor(venv) if monitor else venv


def _unbatch(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's batched info -> SB3's list of per-env dicts."""
    infos: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info", "env_id"):
            continue
        mask = info.get(f"_{key}", np.ones(n, dtype=bool))
        for i in np.flatnonzero(mask):
            infos[i][key] = values[i]
    return infos
