"""Shared-memory observation slots: large arrays skip the socket between co-located processes.

When a client and a server share a machine, the client creates one shared
block with a slot per session for every array observation field, and names it
when it opens its batch sessions. The server writes each step's arrays into
the slots and replies with headers only; the client copies the rows it needs
from the block. A server that cannot attach the block (another machine, a
container, a sandbox with its own /dev/shm) says so, and arrays travel in the
frame as before. A session's slot is rewritten only at its next step, which
the client cannot request before it has read this one.
"""

from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

__all__ = ["ObservationSlots"]

_ALIGN = 64


class ObservationSlots:
    """``count`` slots for each array field ``{name: (dtype, shape)}`` in one shared block."""

    def __init__(self, fields: dict[str, tuple[str, tuple[int, ...]]], count: int, name: str | None = None):
        self.fields = {k: (np.dtype(d).str, tuple(int(x) for x in s)) for k, (d, s) in fields.items()}
        self.count = count
        offsets, size = {}, 0
        for key, (dtype, shape) in self.fields.items():
            offsets[key] = size
            size += -(-count * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
        self.owner = name is None
        self._shm = shared_memory.SharedMemory(name=name, create=self.owner, size=max(size, _ALIGN) if self.owner else 0)
        if not self.owner:
            # The creator unlinks it; keep this process's tracker from unlinking it too at exit.
            resource_tracker.unregister(self._shm._name, "shared_memory")
            if self._shm.size < size:
                self._shm.close()
                raise ValueError(f"shared block {name} has {self._shm.size} bytes, the layout needs {size}")
        self.views = {
            key: np.ndarray((count, *shape), dtype=np.dtype(dtype), buffer=self._shm.buf, offset=offsets[key])
            for key, (dtype, shape) in self.fields.items()
        }

    def describe(self) -> dict[str, Any]:
        """What the server needs to attach: the block's name and layout."""
        return {"name": self._shm.name, "count": self.count, "fields": {k: [d, list(s)] for k, (d, s) in self.fields.items()}}

    @classmethod
    def attach(cls, description: dict[str, Any]) -> "ObservationSlots":
        fields = {k: (d, tuple(s)) for k, (d, s) in description["fields"].items()}
        return cls(fields, int(description["count"]), name=str(description["name"]))

    def fits(self, key: str, value: Any) -> bool:
        dtype, shape = self.fields[key]
        return isinstance(value, np.ndarray) and value.dtype.str == dtype and value.shape == shape

    def close(self) -> None:
        """Release the block (idempotent); the creator also removes it."""
        views, self.views = self.views, {}
        del views  # the views hold the buffer; they must go before close()
        if self._shm is None:
            return
        shm, self._shm = self._shm, None
        shm.close()
        if self.owner:
            try:
                shm.unlink()
            except FileNotFoundError:
                pass  # already removed
