"""``InProcessEnv``: an Environment run directly, without a server.

The same environment logic and the same spaces as ``gym.make("openenv/<name>-v0")``,
in this process: the native baseline benchmarks compare against, and a quick
way to debug an environment.

Example:
    >>> env = InProcessEnv("gym_openenv.servers.echo.server.environment:EchoEnvironment")
    >>> env.reset(seed=0)[0], env.step("hi")[:2]
    ('', ('hi', 0.2))
"""

from typing import Any

import gymnasium as gym

from gym_openenv.manifest import import_object
from gym_openenv.protocol import observation_payload
from gym_openenv.schema import EnvSchema
from gym_openenv.server.host import ModelSpecs

__all__ = ["InProcessEnv"]


class InProcessEnv(gym.Env):
    """A gymnasium view of an Environment instance in this process."""

    metadata = {"render_modes": []}

    def __init__(self, environment: str, **env_kwargs: Any):
        self.env = import_object(environment)(**env_kwargs)
        specs = ModelSpecs.of(self.env)
        self._action = specs.action
        # Decoding goes through the same schema a remote client would see.
        self._schema = EnvSchema(specs.action, specs.observation)
        self.action_space = specs.action.space
        self.observation_space = specs.observation.space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        kwargs = dict(options or {}, **({} if seed is None else {"seed": seed}))
        obs, _, _, _, info = self._schema.step_tuple(observation_payload(self.env.reset(**kwargs), keep_arrays=True))
        return obs, info

    def step(self, action: Any):
        model = self._action.build(self._action.wire_fields(action, keep_arrays=True))
        return self._schema.step_tuple(observation_payload(self.env.step(model), keep_arrays=True))

    def close(self) -> None:
        self.env.close()
        super().close()
