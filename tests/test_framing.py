"""Length-prefixed frames on real socket pairs: read-ahead, large frames, limits, waits and spinning."""

import os
import socket
import threading
import time

import pytest

from gym_openenv.framing import _QUIET_LONGEST, _QUIET_SHORTEST, FRAME_HEADER, FrameReader, receive_frame, send_frame


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def frame(payload: bytes) -> bytes:
    return FRAME_HEADER.pack(len(payload)) + payload


def test_frames_written_back_to_back_come_out_whole_and_in_order(pair):
    left, right = pair
    payloads = [b"a", b"", b"x" * 70_000, b"bc" * 10, bytes(range(256)) * 600, b"last"]
    writer = threading.Thread(target=lambda: left.sendall(b"".join(frame(p) for p in payloads)))
    writer.start()  # sendall blocks once the socket's buffer is full: the reader must drain it
    reader = FrameReader(right, limit=1 << 20)
    assert [bytes(reader.read()) for _ in payloads] == payloads
    writer.join(timeout=30)


def test_a_frame_trickling_in_byte_by_byte_is_read_whole(pair):
    left, right = pair
    data = frame(b"hello") + frame(b"world")

    def trickle():
        for i in range(len(data)):
            left.send(data[i : i + 1])
            time.sleep(0.001)

    writer = threading.Thread(target=trickle)
    writer.start()
    right.setblocking(False)
    reader = FrameReader(right, limit=100, spin=0.0005)
    assert (bytes(reader.read(timeout=10)), bytes(reader.read(timeout=10))) == (b"hello", b"world")
    writer.join(timeout=30)


def test_a_frame_ending_near_the_buffers_end_and_arriving_in_pieces_is_read_whole(pair):
    """The reader's buffer holds a frame read ahead, and the rest of the next frame, which
    ends two bytes before the buffer does, comes later: the frame comes out whole."""
    left, right = pair
    right.setblocking(False)
    reader = FrameReader(right, limit=1 << 20)
    first = b"a" * 100
    second = bytes(i % 251 for i in range(len(reader._buffer) - 2 - len(frame(first)) - FRAME_HEADER.size))
    data = frame(first) + frame(second)
    left.sendall(data[:-1])
    assert reader.read(timeout=10) == first
    timer = threading.Timer(0.05, left.sendall, (data[-1:] + frame(b"third"),))
    timer.start()
    assert reader.read(timeout=10) == second
    assert reader.read(timeout=10) == b"third"
    timer.join()


def test_each_frame_is_its_own_buffer(pair):
    left, right = pair
    left.sendall(frame(b"first") + frame(b"second"))
    reader = FrameReader(right, limit=100)
    first = reader.read()
    reader.read()
    assert first == b"first"  # not overwritten by the frame read after it


def test_a_frame_over_the_limit_is_refused(pair):
    left, right = pair
    left.sendall(frame(b"x" * 101))
    with pytest.raises(ValueError, match="over the limit of 100"):
        FrameReader(right, limit=100).read()
    left.sendall(frame(b"y" * 101))
    with pytest.raises(ValueError, match="over the limit"):
        receive_frame(right, 100)


def test_a_peer_closing_mid_frame_is_a_connection_error(pair):
    left, right = pair
    left.sendall(frame(b"complete") + FRAME_HEADER.pack(10) + b"half")
    left.close()
    reader = FrameReader(right, limit=100)
    assert reader.read() == b"complete"
    with pytest.raises(ConnectionError):
        reader.read()


def test_a_non_blocking_reader_times_out_then_reads_what_comes_later(pair):
    left, right = pair
    right.setblocking(False)
    reader = FrameReader(right, limit=100, spin=0.001)
    with pytest.raises(TimeoutError):
        reader.read(timeout=0.05)
    send_frame(left, b"late")
    assert reader.read(timeout=10) == b"late"


def test_send_frame_on_a_non_blocking_socket_waits_for_a_full_buffer_to_drain(pair):
    left, right = pair
    left.setblocking(False)
    big = bytes(range(256)) * 8192  # 2 MiB: far more than a socket buffer holds
    received = []
    reading = threading.Thread(target=lambda: received.append(FrameReader(right, limit=1 << 22).read()))
    reading.start()
    send_frame(left, big)
    reading.join(timeout=30)
    assert received == [big]


def test_the_reader_stops_spinning_while_frames_come_late_and_starts_again_when_they_are_quick(pair):
    left, right = pair
    right.setblocking(False)
    reader = FrameReader(right, limit=100, spin=0.2)

    def answer_after(delay: float) -> None:
        timer = threading.Timer(delay, send_frame, (left, b"ok"))
        timer.start()
        assert reader.read(timeout=30) == b"ok"
        timer.join()

    assert reader.spinning
    answer_after(1.0)  # a slow peer: a wait far past the spin
    assert not reader.spinning
    for _ in range(10):  # quick answers bring the average back under the spin
        answer_after(0.001)
    # ... and it spins again; on a loaded machine once the pause after a spin that lost its
    # CPU is over too (at most 1 s: see the next test)
    time.sleep(1.05)
    assert reader.spinning


def test_descriptors_passed_with_a_frame_arrive_with_it_and_unclaimed_ones_can_be_closed(pair):
    left, right = pair
    read_end, write_end = os.pipe()
    try:
        send_frame(left, b"plain")
        send_frame(left, b"with a pipe", fds=[read_end])
        send_frame(left, b"plain again")
        reader = FrameReader(right, limit=100)
        reader.take_fds = True
        assert [bytes(reader.read()) for _ in range(3)] == [b"plain", b"with a pipe", b"plain again"]
        (received,) = reader.fds
        os.write(write_end, b"ok")
        assert os.read(received, 2) == b"ok"  # the same pipe, through another descriptor
        reader.close_fds()
        assert reader.fds == []
        with pytest.raises(OSError):
            os.fstat(received)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_a_reader_whose_spin_loses_its_cpu_to_another_task_stops_spinning_for_a_while(pair):
    """A busy process pinned to the reader's CPU takes it mid-spin (the scheduler's slices are
    milliseconds): the reader must then sleep in poll instead, not spin against it."""
    left, right = pair
    right.setblocking(False)
    reader = FrameReader(right, limit=100, spin=2.0)
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    started_r, started_w = os.pipe()
    busy = os.fork()
    if busy == 0:  # the busy task: bounded, and killed below anyway
        os.sched_setaffinity(0, {cpu})
        os.write(started_w, b"x")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            pass
        os._exit(0)
    try:
        # The busy task must hold the CPU before the reader spins (a reader that spins first has
        # it to itself for a while, however well it behaves once it loses it).
        assert os.read(started_r, 1) == b"x"
        os.sched_setaffinity(0, {cpu})
        time.sleep(0.05)
        assert reader.spinning
        timer = threading.Timer(1.5, send_frame, (left, b"ok"))
        timer.start()
        cpu_before = time.thread_time()
        assert reader.read(timeout=30) == b"ok"  # within its 2 s spin, which shares the CPU with the busy task
        spent = time.thread_time() - cpu_before
        timer.join()
        assert reader._quiet_for > _QUIET_SHORTEST  # it saw that it lost its CPU, and paused
        # A reader spinning through the wait gets 19-27 ms of CPU here between the busy task's
        # slices (it yields every few tries); one that sleeps once it lost the CPU takes well
        # under one slice (0.25-0.4 ms measured).
        assert spent < 0.008, f"the reader spun on for {spent * 1e3:.1f} ms of CPU"
    finally:
        os.sched_setaffinity(0, before)
        os.kill(busy, 9)
        os.waitpid(busy, 0)
        os.close(started_r)
        os.close(started_w)


def test_stray_cpu_losses_keep_the_pause_short_and_losses_right_after_a_pause_double_it(pair):
    """The pause policy, on the clock a spin reports its losses with: an idle virtual machine
    takes a spinning reader's CPU a few times a second (kernel threads, timers), which must not
    add up to long pauses; a busy task takes it back within milliseconds of every pause."""
    _, right = pair
    reader = FrameReader(right, limit=100, spin=0.001)
    now = 1000.0
    for _ in range(50):  # strays, 0.15 s apart: every pause is the shortest
        reader._stay_quiet(now)
        assert reader._quiet_from - now == pytest.approx(_QUIET_SHORTEST)
        now += 0.15
    pauses = []
    for _ in range(10):  # contended: each spin after a pause loses its CPU 2 ms in
        reader._stay_quiet(now)
        pauses.append(reader._quiet_from - now)
        now = reader._quiet_from + 0.002
    assert pauses == pytest.approx([min(_QUIET_SHORTEST * 2**i, _QUIET_LONGEST) for i in range(10)])
    assert pauses[-1] == pytest.approx(_QUIET_LONGEST)
    reader._stay_quiet(now + 1.0)  # a loss a second after the last pause ended: a stray again
    assert reader._quiet_from - (now + 1.0) == pytest.approx(_QUIET_SHORTEST)
