"""Python cost per env (per row) of one batched step, piece by piece, in one process.

What a batched step costs per env outside the environment itself, for echo
(64 envs, message "hello") and Atari Pong (32 envs, RGB frames):

* server: ``ModelSpec.build`` (a wire action row -> the action model, checked;
  ``build_batch``: the same from the whole action columns),
  ``observation_payload`` (the observation model -> its wire payload) and
  ``BatchResult.of`` (payloads -> reply columns);
* client: ``action_columns`` (the action batch -> checked wire columns) and
  ``assemble`` (reply columns -> gymnasium's batched obs/reward/flags/info).
  Atari's frames come from a shared-memory-like slot array, as on a local server.

No server processes: the specs are those a server derives from its models
(``ModelSpecs.of``) and a client from that server's ``/schema``; the reply
goes through the binary codec as on the wire.

    python benchmarks/per_row_cost.py              # ~0.5 s per row of the table
    python benchmarks/per_row_cost.py --seconds 2

Prints microseconds per env for each piece.
"""

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from gym_openenv.batching import action_columns, assemble
from gym_openenv.protocol import BatchResult, decode_batch_reply, decode_msgpack, encode_msgpack, observation_payload
from gym_openenv.server.host import ModelSpecs
from gym_openenv.session_pool import SlotColumn, _chunk
from gym_openenv.spaces import ModelSpec


def per_row_us(call: Callable[[], Any], rows: int, seconds: float) -> float:
    """Microseconds per row of ``call`` (which handles ``rows`` rows), best of five windows."""
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(5):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            call()
            calls += 1
        best = min(best, elapsed / calls)
    return best / rows * 1e6


def client_specs(server: ModelSpecs) -> tuple[ModelSpec, ModelSpec]:
    """The specs a client derives from this server's ``/schema`` (as ``EnvSchema.fetch``)."""
    action = ModelSpec.from_json_schema(server.action.json_schema(), role="action")
    observation = ModelSpec.from_json_schema(server.observation.json_schema(), role="observation")
    legal = next((f.name for f in observation.fields if f.name == "legal_actions"), None)
    if legal is not None and isinstance(action.space, spaces.Discrete):
        observation.action_mask = (legal, action.space)
    return action, observation


def case(name: str, env: Any, batch_actions: Any, observation: Any, n: int, seconds: float, slots: list[str] = ()) -> list[tuple[str, float]]:
    specs = ModelSpecs.of(env)
    action, obs_spec = client_specs(specs)
    wire_actions = decode_msgpack(encode_msgpack(action_columns(action, batch_actions, n)))  # as the server reads them
    rows = [{k: col[i].item() if isinstance(col, np.ndarray) else col[i] for k, col in wire_actions.items()} for i in range(n)]
    observations = [observation] * n
    payloads = [observation_payload(o, keep_arrays=True) for o in observations]
    reply = BatchResult.of(payloads)
    for key in slots:  # array fields in shared slots: their columns travel as None
        reply.observation[key] = [None] * n
    reply.shm = list(slots)
    wire = encode_msgpack(reply.wire())
    indices = np.arange(n)
    shared = {key: np.repeat(getattr(observation, key)[None], n, axis=0) for key in slots}  # the slots' block

    def chunks() -> list:
        decoded = decode_batch_reply(wire)
        for key in slots:
            decoded.observation[key] = SlotColumn(shared[key], indices)
        return [_chunk(indices, decoded)]

    ready = chunks()
    results = [
        ("server: ModelSpec.build", per_row_us(lambda: [specs.action.build(r) for r in rows], n, seconds)),
        ("server: ModelSpec.build_batch", per_row_us(lambda: specs.action.build_batch(wire_actions, n), n, seconds)),
        ("server: observation_payload", per_row_us(lambda: [observation_payload(o, keep_arrays=True) for o in observations], n, seconds)),
        ("server: BatchResult.of", per_row_us(lambda: BatchResult.of(payloads), n, seconds)),
        ("client: action_columns", per_row_us(lambda: action_columns(action, batch_actions, n), n, seconds)),
        ("client: decode reply", per_row_us(chunks, n, seconds)),
        ("client: assemble", per_row_us(lambda: assemble(obs_spec, ready, indices, n), n, seconds)),
    ]
    return [(f"{name} {label}", us) for label, us in results]


def echo_case(n: int, seconds: float) -> list[tuple[str, float]]:
    from gym_openenv.servers.echo.server.environment import EchoEnvironment

    env = EchoEnvironment()
    env.reset()
    observation = env.step(env.action_type(message="hello"))
    return case(f"echo x{n}", env, ("hello",) * n, observation, n, seconds)


def atari_case(n: int, seconds: float) -> list[tuple[str, float]]:
    from gym_openenv.servers.atari.server.environment import AtariEnvironment

    env = AtariEnvironment(game="pong")
    env.reset(seed=0)
    observation = env.step(env.action_type(action_id=0))
    actions = np.zeros(n, dtype=np.int64)
    try:
        return case(f"atari x{n}", env, actions, observation, n, seconds, slots=["screen"])
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per row of the table")
    args = parser.parse_args()
    rows = echo_case(64, args.seconds) + atari_case(32, args.seconds)
    width = max(len(label) for label, _ in rows)
    for label, us in rows:
        print(f"{label:<{width}}  {us:8.2f} us/env")


if __name__ == "__main__":
    main()
