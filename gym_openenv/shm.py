"""Shared-memory observation slots: large arrays skip the socket between co-located processes.

The *server* creates the block (a sealed ``memfd``: it has no name in
``/dev/shm``, and nobody, its creator included, can shrink or grow it), one
slot per session for every large array field, and describes it in its
``opened`` reply: its pid, file descriptor, layout and a random token written
into the block's header. On a direct socket the descriptor itself comes with that
reply (``SCM_RIGHTS``: any pid namespace or user); elsewhere a client on the same
machine opens ``/proc/<pid>/fd/<fd>``. It checks the seals, the size and the token, and then
reads each step's arrays from the slots while the reply carries headers only.
A client that cannot open it (another machine, a container or sandbox with its
own pid namespace, another user) says so by not asking for shared arrays, and
arrays travel in the frame.

Why a sealed memfd: the server never opens a file a client names (a client
cannot make it write over another file), and since the block cannot shrink,
a hostile client cannot make the server's writes fault (SIGBUS).

A session may have several slots per field, used in *turns*: a reply's ``turn``
says which one its arrays are in (:meth:`ObservationSlots.slot`). A slot is
rewritten only ``turns`` calls later, which the client cannot make before it has
read this one. Why turns: a slot the client has just read is still in its CPU's
cache, and the server's next write into it must first take every cache line of it
back (for a 100 KB Atari screen, ~10 us of a ~300 us round trip here); a slot read
several calls ago has left that cache.

Example:
    >>> slots = ObservationSlots.create({"screen": ("|u1", (210, 160, 3))}, count=4)   # server
    >>> view = ObservationSlots.open(slots.describe())                               # client
    >>> slots.write("screen", 2, np.full((210, 160, 3), 7, np.uint8))
    >>> int(view.views["screen"][2, 0, 0, 0])
    7
    >>> view.close(); slots.close()
    >>> slots = ObservationSlots.create({"screen": ("|u1", (210, 160, 3))}, count=2, turns=3)
    >>> [slots.slot(1, turn) for turn in range(4)]  # session 1's slot in turns 0, 1, 2, then 0 again
    [1, 3, 5, 1]
    >>> slots.close()
"""

import fcntl
import mmap
import os
import secrets
from typing import Any

import numpy as np

__all__ = ["MIN_SHARED_BYTES", "MOST_TURNS", "ObservationSlots", "turns_for"]

_ALIGN = 64
_HEADER = 64  # the block starts with a random token, so a client knows it opened the right one
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
#: The name of our memfds, as /proc/<pid>/fd shows them ("/memfd:<name> (deleted)").
_MEMFD_NAME = "gym-openenv-slots"
#: arrays smaller than this travel in the frame: for them the socket is cheaper
MIN_SHARED_BYTES = 4096
#: the most turns a block may have (a client says how many it takes, up to this)
MOST_TURNS = 64


#: Slots per session the server aims at: a session's slot is rewritten after about this
#: many slots were written (a batch of n sessions writes n per call). Atari's screen,
#: server-side ALE step in one round trip at a time: 1 slot 252 us, 2: 245, 3: 243, 8: 237
#: (in-process ALE 232 us; lower quartiles of 16 interleaved runs of 1,500 steps each, here).
TARGET_SLOTS = 8
#: Bytes a block may spend on turns beyond its sessions' first slots.
TURN_BUDGET = 8 << 20


def turns_for(count: int, slot_bytes: int, most: int) -> int:
    """How many turns a block of ``count`` sessions with ``slot_bytes`` per slot gets (at most ``most``).

    Example:
        >>> turns_for(1, 100_800, 8), turns_for(4, 100_800, 8), turns_for(16, 100_800, 8), turns_for(1, 100_800, 1)
        (8, 2, 1, 1)
    """
    wanted = -(-TARGET_SLOTS // count)
    affordable = 1 + TURN_BUDGET // max(1, count * slot_bytes)
    return max(1, min(wanted, affordable, most))


def _layout(fields: dict[str, tuple[str, tuple[int, ...]]], count: int) -> tuple[dict[str, int], int]:
    offsets, size = {}, _HEADER
    for key, (dtype, shape) in fields.items():
        offsets[key] = size
        size += -(-count * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
    return offsets, size


class ObservationSlots:
    """Slots for ``count`` sessions, ``turns`` each, for every array field ``{name: (dtype, shape)}``, in one shared block.

    Made by :meth:`create` (the server) or :meth:`open` (a client on the same machine).
    A session's slots are :meth:`slot` ``(k, turn)``: all the sessions' first ones, then their second ones...
    """

    def __init__(self, fields: dict[str, tuple[str, tuple[int, ...]]], count: int, fd: int, token: bytes, pid: int, turns: int = 1):
        self.pid = pid  # the process that created the block
        self.fields = {k: (np.dtype(d).str, tuple(int(x) for x in s)) for k, (d, s) in fields.items()}
        self.count = count
        self.turns = turns
        self.token = token
        self._fd = fd
        offsets, self.size = _layout(self.fields, count * turns)
        self._map = mmap.mmap(fd, self.size)
        self.views = {
            key: np.ndarray((count * turns, *shape), dtype=np.dtype(dtype), buffer=self._map, offset=offsets[key])
            for key, (dtype, shape) in self.fields.items()
        }
        #: each slot's view, made once: an environment renders into the very view its slot is
        self.slot_views = {key: list(view) for key, view in self.views.items()}
        self._dtypes = {key: view.dtype for key, view in self.views.items()}

    @classmethod
    def create(cls, fields: dict[str, tuple[str, tuple[int, ...]]], count: int, turns: int = 1) -> "ObservationSlots":
        """A new sealed block (server side). Raises OSError where memfds are unavailable."""
        _, size = _layout(fields, count * turns)
        fd = os.memfd_create(_MEMFD_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            token = secrets.token_bytes(16)
            os.pwrite(fd, token, 0)
            return cls(fields, count, fd, token, os.getpid(), turns)
        except BaseException:
            os.close(fd)
            raise

    def describe(self) -> dict[str, Any]:
        """What a client on this machine needs to open the block."""
        return {
            "pid": self.pid,
            "fd": self._fd,
            "token": self.token,
            "count": self.count,
            "turns": self.turns,
            "fields": {k: [d, list(s)] for k, (d, s) in self.fields.items()},
        }

    @classmethod
    def open(cls, description: dict[str, Any], fd: int | None = None) -> "ObservationSlots":
        """Open a server's block (client side): ``fd`` if the server passed its descriptor
        (it is then the block's, closed with it), else through ``/proc/<pid>/fd``.

        Raises:
            OSError: the block is out of reach (another machine or pid namespace, another user).
            ValueError: what was opened is not that block (wrong token, size or seals).
        """
        if fd is None:
            path = f"/proc/{int(description['pid'])}/fd/{int(description['fd'])}"
            # Another pid namespace's pid (a container's server says 1) names some other process here:
            # open nothing that is not a block of ours (a device, a pipe, a terminal), and never wait on it.
            if not os.readlink(path).startswith(f"/memfd:{_MEMFD_NAME} "):
                raise ValueError(f"{path} is not a gym_openenv shared block")
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            fields = {str(k): (str(d), tuple(s)) for k, (d, s) in description["fields"].items()}
            count, token = int(description["count"]), bytes(description["token"])
            turns = int(description.get("turns", 1))  # a server without turns has one slot per session
            if count < 1 or not 1 <= turns <= MOST_TURNS:
                raise ValueError(f"a shared block of {count} sessions with {turns} turns each")
            _, size = _layout(fields, count * turns)
            if os.fstat(fd).st_size != size:
                raise ValueError(f"the shared block has {os.fstat(fd).st_size} bytes, its layout needs {size}")
            if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & _SEALS != _SEALS:
                raise ValueError("the shared block is not sealed against resizing")
            if os.pread(fd, len(token), 0) != token:
                raise ValueError("the file opened is not the server's shared block (token mismatch)")
            return cls(fields, count, fd, token, int(description["pid"]), turns)
        except BaseException:
            os.close(fd)
            raise

    def slot(self, k: int, turn: int) -> int:
        """Session ``k``'s slot (its index in :attr:`views`) in a reply's ``turn``."""
        return turn % self.turns * self.count + k

    def fits(self, key: str, value: Any) -> bool:
        return isinstance(value, np.ndarray) and value.dtype == self._dtypes[key] and value.shape == self.fields[key][1]

    def write(self, key: str, slot: int, value: np.ndarray) -> None:
        """Put ``value`` into ``slot`` (no copy if the environment rendered it there already)."""
        target = self.slot_views[key][slot]
        if value is not target and value.__array_interface__["data"][0] != target.__array_interface__["data"][0]:
            target[...] = value

    def close(self) -> None:
        """Release the block (idempotent); it is gone once every process holding it closed it."""
        views, self.views, self.slot_views = self.views, {}, {}
        del views  # the views hold the buffer; they must go before the map closes
        if self._map is not None:
            self._map.close()
            self._map = None
            os.close(self._fd)
