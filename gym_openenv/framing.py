"""Length-prefixed frames on a stream socket: how the direct transport delimits its messages.

A frame is :data:`FRAME_HEADER` (the message's length) and the message's bytes.
Both sides of :mod:`gym_openenv.direct` use this module:

* :func:`send_frame` writes one frame, in one system call when it is small;
* :class:`FrameReader` reads frames ahead into a buffer, so a small frame
  (every request, and every reply whose arrays are in shared memory) costs one
  ``recv`` instead of one for the header and one for the body. On a socket in
  non-blocking mode it waits with its own ``poll`` (a socket timeout would
  poll before every ``recv``) and can first *spin*: poll the socket without
  sleeping for a few hundred microseconds. A round trip to an environment
  that answers within that time then skips the wake-up of a sleeping thread
  (on a virtual machine, an interrupt to an idle CPU) on the waiting side.
"""

import array
import os
import select
import socket
import struct
import time

__all__ = ["FRAME_HEADER", "FrameReader", "receive_frame", "send_frame"]

#: A frame's header: the message's length in bytes (little-endian uint32).
FRAME_HEADER = struct.Struct("<I")
#: Frames up to this size go out in one write (header and body copied together).
_SMALL_FRAME = 64 * 1024
#: Bytes a reader asks the kernel for at once: any small frame, and the next one if it came too.
_READ_AHEAD = 64 * 1024
#: Lets another thread that is ready to run on this CPU go first (a spinning reader's peer, say).
_yield = getattr(os, "sched_yield", lambda: None)
#: A spinning reader yields this often (seconds): often enough for a peer that shares its
#: CPU, rarely enough not to pay a trip through the scheduler per try (0.56x -> 0.66x of
#: in-process ALE for one Atari env here, when yielding at every try of ~1.3 us).
_YIELD_EVERY = 10e-6
#: A gap this long between two tries of a spin means the spinning thread lost its CPU to
#: another task: the CPUs are contended, and spinning only takes time from the peer.
_PREEMPTED = 200e-6
#: Seconds a reader that lost its CPU while spinning waits in ``poll`` without spinning: the
#: first time the shortest (a stray interrupt or thread on an idle machine); doubled each time
#: the next spin loses its CPU too, up to the longest (CPUs shared with busy tasks).
_QUIET_SHORTEST, _QUIET_LONGEST = 0.01, 1.0
#: A spin that loses its CPU within this many seconds of the end of the last pause is "the next
#: spin losing its CPU too": the CPUs are contended (a busy task takes the CPU back within its
#: scheduler slice, a few milliseconds). A loss later than that is a stray, and the pause starts
#: again from the shortest. (Asking for calm in proportion to the pause instead let a virtual
#: machine's stray losses, a few a second when idle, double the pause to its longest: here a
#: lone gym.make spent 4.3 s of 5 in poll, at 0.5x of in-process ALE instead of 0.7x.)
_CONTENDED_WITHIN = 0.05
#: Descriptors one read takes with it (more are closed by the kernel); a frame passes one.
_MAX_FDS = 4
_FD_SIZE = array.array("i").itemsize  # a descriptor is passed as a C int


def send_frame(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    """One frame on a stream socket (blocking, with a timeout, or non-blocking: then it waits in ``poll``).

    ``fds``: file descriptors to pass with the frame (Unix sockets; a :class:`FrameReader`
    with ``take_fds`` set receives them in :attr:`FrameReader.fds`).
    """
    header = FRAME_HEADER.pack(len(payload))
    if fds:
        data = header + payload
        while True:
            try:
                sent = socket.send_fds(sock, [data], fds)  # the descriptors ride with the first byte
                break
            except BlockingIOError:
                _wait_writable(sock)
        _send_all(sock, data[sent:])
    elif len(payload) <= _SMALL_FRAME:
        _send_all(sock, header + payload)  # one write: a small copy beats a second system call
    else:
        _send_all(sock, header)
        _send_all(sock, payload)


def _send_all(sock: socket.socket, data: bytes) -> None:
    if sock.gettimeout() != 0.0:
        sock.sendall(data)
        return
    try:
        sent = sock.send(data)  # a small frame goes in one call, as a rule
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)
    while sent < len(data):
        try:
            sent += sock.send(view[sent:])
        except BlockingIOError:  # the peer's buffer is full: wait until it reads
            _wait_writable(sock)


def _wait_writable(sock: socket.socket) -> None:
    writable = select.poll()
    writable.register(sock, select.POLLOUT)
    writable.poll()


def receive_frame(sock: socket.socket, limit: int) -> bytearray:
    """The next frame's message from a blocking socket, read exactly (no read-ahead: for one-off frames).

    Raises:
        ConnectionError: the peer closed the connection (mid-frame included).
        ValueError: the frame is longer than ``limit`` bytes (the stream cannot be trusted after it).
    """
    (size,) = FRAME_HEADER.unpack(_receive_exactly(sock, FRAME_HEADER.size))
    if size > limit:
        raise _too_large(size, limit)
    return _receive_exactly(sock, size)


def _too_large(size: int, limit: int) -> ValueError:
    return ValueError(f"a frame of {size} bytes is over the limit of {limit}")


def _receive_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if not count:
            raise ConnectionError("the peer closed the connection")
        received += count
    return buffer


class FrameReader:
    """Reads the frames of ``sock`` ahead: bytes after a frame stay buffered for the next one.

    Every frame comes back as a new ``bytearray`` (decoders may keep views on it).
    On a socket in non-blocking mode (``sock.setblocking(False)``) :meth:`read` waits
    at most ``timeout`` seconds, after spinning for up to ``spin`` seconds; it spins
    only while frames keep coming within ``spin`` (a moving average of the waits), so
    a slow peer, or one short of CPU that a spinning reader would take it from, gets
    a sleeping reader. On a blocking socket, the socket's own timeout holds.

    Raises (from :meth:`read`):
        ConnectionError: the peer closed the connection (mid-frame included).
        ValueError: a frame is longer than ``limit`` bytes (the stream cannot be trusted after it).
        TimeoutError: nothing came within ``timeout`` seconds.
    """

    def __init__(self, sock: socket.socket, limit: int, spin: float = 0.0):
        self.sock = sock
        self.limit = limit
        self.spin = spin
        #: receive file descriptors passed with the frames (``recvmsg``), into :attr:`fds`
        self.take_fds = False
        #: descriptors received and not yet claimed, in the order they came (the caller owns them)
        self.fds: list[int] = []
        self._typical_wait = 0.0
        #: whether the last read had to wait for its bytes (then the next one asks poll first)
        self._waited = False
        self._quiet_from = 0.0  # no spinning before this time (perf_counter): the CPUs were contended
        self._quiet_for = _QUIET_SHORTEST
        self._buffer = bytearray(_READ_AHEAD)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0  # the unread bytes are _buffer[_start:_end]
        self._readable = select.poll()  # not select(): it fails on descriptors past 1023
        self._readable.register(sock, select.POLLIN)

    @property
    def spinning(self) -> bool:
        """Whether the next wait starts with a spin: frames came within ``spin`` of late, and
        the pause after a spin that lost its CPU to another task is over (while CPUs are
        contended, a sleeping reader, which the scheduler favours when it wakes, gets its reply
        sooner than a spinning one)."""
        return self._spins_at(time.perf_counter())

    def _spins_at(self, now: float) -> bool:
        return self._typical_wait < self.spin and now >= self._quiet_from

    def read(self, timeout: float | None = None) -> bytearray:
        """The next frame's message (``timeout``: non-blocking sockets only)."""
        if not self._end:  # nothing buffered (the usual wait: the buffer is emptied whenever all of it was read)
            self._end = self._receive(self._view, timeout)
        while self._end - self._start < FRAME_HEADER.size:
            self._fill_header(timeout)
        (size,) = FRAME_HEADER.unpack_from(self._buffer, self._start)
        if size > self.limit:
            raise _too_large(size, self.limit)
        begin = self._start + FRAME_HEADER.size
        end = begin + size
        if end <= len(self._buffer):  # fits behind its header: read on into the buffer
            while self._end < end:
                self._end += self._receive(self._view[self._end :], timeout)
            if end == self._end:  # all read: the next frame starts at the front
                self._start = self._end = 0
            else:
                self._start = end
            return self._buffer[begin:end]
        # A large frame: what came ahead is copied, the rest is read straight into the message.
        message = bytearray(size)
        have = min(size, self._end - begin)
        message[:have] = self._view[begin : begin + have]
        self._start = self._end = 0
        view = memoryview(message)
        while have < size:
            have += self._receive(view[have:], timeout)
        return message

    def _fill_header(self, timeout: float | None) -> None:
        """Read on while the next frame's header is incomplete (moved to the front first if it could not fit)."""
        if self._start and len(self._buffer) - self._end < FRAME_HEADER.size + 1:
            self._buffer[: self._end - self._start] = self._buffer[self._start : self._end]  # to the front
            self._end -= self._start
            self._start = 0
        self._end += self._receive(self._view[self._end :], timeout)

    def _receive(self, into: memoryview, timeout: float | None) -> int:
        """Bytes read into ``into`` (at least one): at once if some are there (or the socket
        blocks), else after a wait, spinning first. After a read that had to wait, ``poll`` is
        asked first whether bytes are there: a ``recv`` on an empty non-blocking socket raises,
        which costs several times a ``poll`` (~7,000 instructions against ~900, 1.3 us against
        0.5 us here); while bytes are there at once (a peer ahead of the reader: a vector env's
        later servers), ``recv`` is tried straight, which saves the ``poll``'s system call."""
        if self._waited and not self._readable.poll(0) and self.sock.gettimeout() == 0.0:
            count = self._receive_later(into, timeout)  # nothing there yet, as recv would have found
        else:
            try:
                count = self._recv_with_fds(into) if self.take_fds else self.sock.recv_into(into)
                self._waited = False
            except BlockingIOError:  # non-blocking and nothing there yet
                count = self._receive_later(into, timeout)
        if not count:
            raise ConnectionError("the peer closed the connection")
        return count

    def _receive_later(self, into: memoryview, timeout: float | None) -> int:
        """Bytes read into ``into`` once the non-blocking socket has some: spun for, then waited for in ``poll``."""
        began = time.perf_counter()
        self._waited = True
        try:
            ready = self._spins_at(began) and self._spin(began)
            while True:
                if not ready and not self._readable.poll(None if timeout is None else timeout * 1000):
                    raise TimeoutError(f"no frame within {timeout}s")
                try:
                    return self._recv_with_fds(into) if self.take_fds else self.sock.recv_into(into)
                except BlockingIOError:  # readable, then not (cannot happen on a Unix socket): wait again
                    ready = False
        finally:
            self._typical_wait += 0.25 * (time.perf_counter() - began - self._typical_wait)

    def _spin(self, began: float) -> bool:
        """Whether the socket became readable within a spin from ``began`` (each try a ``poll``
        that does not sleep); false after the spin, or as soon as it lost its CPU to another task."""
        deadline = began + self.spin
        yielded = last = now = began
        readable = self._readable.poll
        while now < deadline:
            if readable(0):
                return True
            now = time.perf_counter()
            if now - last > _PREEMPTED:  # another task had this CPU: stop spinning for a while
                self._stay_quiet(now)
                return False
            if now - yielded > _YIELD_EVERY:
                _yield()  # the peer may be waiting for this very CPU
                yielded = now
            last = now
        return False

    def _stay_quiet(self, now: float) -> None:
        if now - self._quiet_from > _CONTENDED_WITHIN:  # it spun a while since the last pause: a stray preemption
            self._quiet_for = _QUIET_SHORTEST
        self._quiet_from = now + self._quiet_for
        self._quiet_for = min(2 * self._quiet_for, _QUIET_LONGEST)

    def _recv_with_fds(self, into: memoryview) -> int:
        count, ancillary, _, _ = self.sock.recvmsg_into([into], socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % _FD_SIZE])
                self.fds += fds.tolist()
        return count

    def close_fds(self) -> None:
        """Close the descriptors received and not claimed."""
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)
