"""Deep equality of what gymnasium environments return: observations, infos, batches."""

from typing import Any

import numpy as np


def same(a: Any, b: Any) -> bool:
    """``a`` equals ``b`` exactly: dicts by key, sequences by item, arrays by dtype, shape and
    value, object arrays (batched text, sequences) item by item."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and all(same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def pong_rollout(env: Any, envs: Any, steps: int) -> tuple[list, list]:
    """(frames of ``env``, batches of ``envs``) from fixed seeds over ``steps`` random Pong actions,
    the same for every pair of environments that play alike."""
    frames = [env.reset(seed=3)[0]]
    batches = [envs.reset(seed=5)[0]]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        frames.append(env.step(int(rng.integers(6)))[0])
        batches.append(envs.step(rng.integers(6, size=envs.num_envs))[0])
    return frames, batches
