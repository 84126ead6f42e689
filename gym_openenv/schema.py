"""A server's action and observation models as the client sees them (from ``/schema``),
and OpenEnv payloads turned into gymnasium's step tuple."""

from dataclasses import dataclass
from typing import Any

from gym_openenv.client import fetch_json
from gym_openenv.spaces import ModelSpec

__all__ = ["EnvSchema", "StepTuple"]

StepTuple = tuple[Any, float, bool, bool, dict[str, Any]]


@dataclass(frozen=True)
class EnvSchema:
    action: ModelSpec
    observation: ModelSpec

    @classmethod
    async def fetch(cls, base_url: str, token: str | None = None) -> "EnvSchema":
        schema = await fetch_json(base_url, "/schema", token)
        return cls(ModelSpec.from_json_schema(schema["action"]), ModelSpec.from_json_schema(schema["observation"]))

    def step_tuple(self, payload: dict[str, Any]) -> StepTuple:
        """OpenEnv payload -> ``(obs, reward, terminated, truncated, info)``.

        ``info`` holds the observation fields outside the space and the
        server's ``metadata``. ``done`` with ``truncated`` is a truncation.
        """
        fields = payload.get("observation", {})
        info = self.observation.info_values(fields)
        info.update(payload.get("metadata") or {})
        truncated = bool(payload.get("truncated", False))
        terminated = bool(payload.get("done", False)) and not truncated
        reward = payload.get("reward")
        return self.observation.space_value(fields), 0.0 if reward is None else float(reward), terminated, truncated, info
