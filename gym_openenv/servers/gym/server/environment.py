"""``GymEnvironment``: any registered Gymnasium environment, one per session.

Each session runs ``gymnasium.make(env_id, **kwargs)`` and passes calls
straight through: ``reset(seed=...)`` seeds it exactly as ``env.reset(seed=...)``
does, the spaces are the environment's own, and the step's ``info`` dict
reaches the client's ``info`` (through the observation's ``metadata``). So
``gym.make("openenv/gym-v0", env_id="CartPole-v1")`` steps bit-identically to
``gym.make("CartPole-v1")`` for the same seed and actions, with the
simulation in a server process.

Example:
    >>> env = GymEnvironment(env_id="CartPole-v1")
    >>> env.field_spaces()["action"]["action"]
    Discrete(2)
    >>> obs = env.reset(seed=0)
    >>> obs.observation.shape, obs.done
    ((4,), False)
    >>> env.step(GymAction(action=1)).reward
    1.0
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces
from gym_openenv.spaces import space_to_json
from gym_openenv.servers.gym.models import GymAction, GymObservation, GymState

__all__ = ["GymEnvironment"]


class GymEnvironment(Environment[GymAction, GymObservation, GymState]):
    """Serves ``gymnasium.make(env_id, **make_kwargs)``.

    Args:
        env_id: any registered id ("CartPole-v1", "Pendulum-v1", ...); the
            ``"module:Env-v0"`` form imports ``module`` first, which is how
            ids registered by a plugin are reached ("ale_py:ALE/Pong-v5").
        **make_kwargs: passed to ``gymnasium.make`` (``max_episode_steps=200``,
            environment arguments such as ``sutton_barto_reward=True``).

    Raises:
        ValueError: ``env_id`` is not registered, or its spaces cannot travel
            over the wire (Graph, OneOf; see :mod:`gym_openenv.spaces`).
    """

    action_type = GymAction
    observation_type = GymObservation
    state_type = GymState

    def __init__(self, env_id: str = "CartPole-v1", **make_kwargs: Any):
        try:
            self._env = gym.make(env_id, **make_kwargs)
        except gym.error.Error as e:  # unknown id, namespace or version: gymnasium's message says which
            raise ValueError(f"env_id: {env_id!r}: {e}") from None
        for kind, space in (("action", self._env.action_space), ("observation", self._env.observation_space)):
            _check_supported(env_id, kind, space)
        self._env_id = env_id
        self._state = GymState(env_id=env_id)

    # --- Environment API -------------------------------------------------------

    def reset(self, seed: int | None = None, episode_id: str | None = None, **options: Any) -> GymObservation:
        """``env.reset(seed=seed, options=options)``: without a seed the
        environment's RNG carries on from the last episode, as in gymnasium."""
        observation, info = self._env.reset(seed=seed, options=options or None)
        self._state = GymState(env_id=self._env_id, episode_id=episode_id)
        return GymObservation(observation=observation, reward=None, metadata=dict(info))

    def step(self, action: GymAction) -> GymObservation:
        observation, reward, terminated, truncated, info = self._env.step(action.action)
        self._state.step_count += 1
        # The wire knows "done" and "done + truncated" (a time limit). Gymnasium
        # allows both flags at once; termination wins, as SB3 reads it, because
        # a terminal state must not be bootstrapped.
        return GymObservation(
            observation=observation,
            reward=float(reward),
            done=bool(terminated or truncated),
            truncated=bool(truncated and not terminated),
            metadata=dict(info),
        )

    @property
    def state(self) -> GymState:
        return self._state

    def close(self) -> None:
        self._env.close()

    def field_spaces(self) -> FieldSpaces:
        return {
            "action": {"action": self._env.action_space},
            "observation": {"observation": self._env.observation_space},
        }

    def metadata(self) -> EnvironmentMetadata:
        spec = self._env.spec
        return replace(
            super().metadata(),
            documentation_url="https://gymnasium.farama.org",
            extra={
                "env_id": self._env_id,
                "gymnasium_version": gym.__version__,
                "max_episode_steps": spec.max_episode_steps if spec else None,
                "reward_threshold": spec.reward_threshold if spec else None,
                "render_fps": self._env.metadata.get("render_fps"),
            },
        )


def _check_supported(env_id: str, kind: str, space: spaces.Space) -> None:
    try:
        space_to_json(space)
    except TypeError:
        raise ValueError(
            f"env_id: {env_id}'s {kind} space {space} cannot be served; supported: Box, Discrete, "
            "MultiDiscrete, MultiBinary, Text and Dict/Tuple/Sequence of them"
        ) from None
