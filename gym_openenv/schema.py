"""A server's action and observation models as the client sees them (from ``/schema``),
and OpenEnv payloads turned into gymnasium's step tuple.

Spaces come, in order of precedence, from the ``action_space=`` /
``observation_space=`` the user passes, a :mod:`~gym_openenv.hints` entry for
a well-known upstream environment, and the schema itself
(:mod:`gym_openenv.spaces`).

Sparse observations: a field that a reset or step observation leaves out (or
sends as null) takes its default (the schema's ``default``, else the
space's, see :func:`~gym_openenv.spaces.default_value`) and is named in
``info["missing_fields"]``. A server may offer a ``reset_observation`` schema
beside ``observation`` in ``/schema``; its defaults then fill the fields a
reset leaves out.

Where the observation lists the legal actions (``legal_actions``) and the
action space is ``Discrete``, ``info["action_mask"]`` is an ``int8`` mask over it.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from gymnasium import spaces

from gym_openenv.client import AsyncSession, fetch_json
from gym_openenv.endpoint import Endpoint
from gym_openenv.errors import OpenEnvError
from gym_openenv.hints import find_hint
from gym_openenv.spaces import ModelSpec
from gym_openenv.spaces.base import SPACE_KEY

__all__ = ["EnvSchema", "StepTuple"]

StepTuple = tuple[Any, float, bool, bool, dict[str, Any]]

#: Observation field names that list the legal action ids, if the schema names none.
LEGAL_ACTION_FIELDS = ("legal_actions", "legal_action_ids", "valid_actions")


@dataclass(frozen=True)
class EnvSchema:
    """Action and observation specs of one server, with what the client derived around them.

    Attributes:
        reset_observation: the server's ``reset_observation`` schema, where it offers one.
        deterministic: the server's ``/metadata`` ``deterministic`` flag (``None``: it says nothing).
    """

    action: ModelSpec
    observation: ModelSpec
    reset_observation: ModelSpec | None = None
    deterministic: bool | None = None

    @classmethod
    async def fetch(
        cls,
        base_url: str,
        token: str | None = None,
        *,
        action_space: Any = None,
        observation_space: Any = None,
        hints: bool = True,
    ) -> "EnvSchema":
        """Read ``/schema`` (and ``/metadata``) and derive the spaces.

        Raises:
            ValueError: ``action_space`` / ``observation_space`` does not fit the schema.
        """
        schema = await fetch_json(base_url, "/schema", token)
        action = ModelSpec.from_json_schema(schema["action"], role="action")
        observation = ModelSpec.from_json_schema(schema["observation"], role="observation")
        reset = ModelSpec.from_json_schema(schema["reset_observation"]) if "reset_observation" in schema else None
        # Hints are for schemas that say too little; a server that declares its spaces
        # (ours: x-gym-space) is taken at its word even where its model names match upstream's.
        declared = any(SPACE_KEY in prop for prop in schema["observation"].get("properties", {}).values())
        hint = find_hint(action.title, observation.title) if hints and not declared else None
        mask_field = None
        if hint is not None:
            probe = await _cached_probe(base_url, token, hint.needs_state) if hint.needs_probe else None
            action_hint, observation_hint = hint.resolve(probe)
            if action_space is None and action_hint:
                action_space = action_hint
            if observation_space is None and observation_hint:
                observation_space = observation_hint
            mask_field = hint.action_mask
        if action_space is not None:
            action = action.with_space(action_space)
        if observation_space is not None:
            observation = observation.with_space(observation_space)
        try:
            deterministic = (await fetch_json(base_url, "/metadata", token)).get("deterministic")
        except OpenEnvError:
            deterministic = None  # /metadata is optional in OpenEnv
        mask_field = mask_field or next((f.name for f in observation.fields if f.name in LEGAL_ACTION_FIELDS), None)
        if mask_field is not None and isinstance(action.space, spaces.Discrete):
            observation.action_mask = (mask_field, action.space)
        return cls(action, observation, reset, deterministic if isinstance(deterministic, bool) else None)

    def step_tuple(self, payload: dict[str, Any], *, reset: bool = False) -> StepTuple:
        """OpenEnv payload -> ``(obs, reward, terminated, truncated, info)``.

        ``info`` holds the observation fields outside the space, the server's
        ``metadata``, ``missing_fields`` (fields the observation left out, given
        their default) and ``action_mask`` where the server lists legal actions.
        ``done`` with ``truncated`` is a truncation.
        """
        fields = payload.get("observation") or {}
        if reset and self.reset_observation is not None:
            fields = {**self._reset_defaults, **fields}
        obs, missing = self.observation.decode(fields)
        info = self.observation.info_values(fields)
        metadata = payload.get("metadata")
        if metadata:
            info.update(metadata)
        if missing:
            info["missing_fields"] = missing
        mask = self.observation.legal_mask(fields)
        if mask is not None:
            info["action_mask"] = mask
        truncated = bool(payload.get("truncated", False))
        terminated = bool(payload.get("done", False)) and not truncated
        reward = payload.get("reward")
        return obs, 0.0 if reward is None else float(reward), terminated, truncated, info

    @property
    def _reset_defaults(self) -> dict[str, Any]:
        return {f.name: f.schema["default"] for f in self.reset_observation.fields if f.schema and f.schema.get("default") is not None}


#: Probes by (server, with state): a server's configuration (game, task) is fixed while it
#: runs, and a second env on a one-session server could not open a probe session.
_PROBES: dict[tuple[str, bool], Mapping[str, Any]] = {}


async def _cached_probe(base_url: str, token: str | None, with_state: bool) -> Mapping[str, Any]:
    key = (base_url, with_state)
    if key not in _PROBES:
        _PROBES[key] = await _probe(base_url, token, with_state)
    return _PROBES[key]


async def _probe(base_url: str, token: str | None, with_state: bool = False) -> Mapping[str, Any]:
    """One reset observation's fields (and, ``with_state``, the session's state under ``"state"``).

    OpenEnv's ``POST /reset`` resets a throwaway environment outside the session
    table, so a server that allows one session still has it free; the state needs
    a session of its own, closed before the environment's opens.
    """
    if not with_state:
        endpoint = Endpoint.parse(base_url, token)
        try:
            async with endpoint.async_http_client(60.0) as http:
                response = await http.post(endpoint.http_url("/reset"), json={})
            if response.status_code == 200:
                return response.json().get("observation") or {}
        except httpx.HTTPError:
            pass  # no HTTP reset: a session
    session = AsyncSession(base_url, token=token)
    try:
        await session.connect()
        fields = dict((await session.reset()).get("observation") or {})
        if with_state:
            fields["state"] = await session.state()
        return fields
    finally:
        await session.close()
