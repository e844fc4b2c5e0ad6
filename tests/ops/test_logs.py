"""The log sink: lines are written by a thread of their own; lost ones are counted, never
raised, and nobody who logs waits for the reader."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from game_server.ops.logs import ConnectionLineSampler, LogSink

DEVNULL = os.stat(os.devnull).st_rdev


@pytest.fixture
def pipe() -> Iterator[tuple[int, TextIO]]:
    """A pipe's read end and its write end as a text stream, like stderr."""
    read_end, write_end = os.pipe()
    stream = open(write_end, "w")  # noqa: SIM115 - closed below, whatever the test did
    try:
        yield read_end, stream
    finally:
        stream.close()
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(read_end)


def read_lines(read_end: int, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        readable, _, _ = select.select([read_end], [], [], 10)
        assert readable, f"{len(data.splitlines())} of {count} lines came"
        chunk = os.read(read_end, 1 << 16)
        assert chunk, "the pipe closed early"
        data += chunk
    return data.splitlines()


def test_text_and_json_lines_arrive_whole_and_in_order(pipe: tuple[int, TextIO]) -> None:
    read_end, stream = pipe
    sink = LogSink(stream)
    sink.write("first\n")
    sink.write(b'{"event":"second"}\n')
    sink.write("third\n")
    # The log thread writes them within its gather time; nobody called drain.
    assert read_lines(read_end, 3) == [b"first", b'{"event":"second"}', b"third"]
    sink.close()
    assert sink.lines_lost == 0


def test_close_writes_what_is_still_queued(pipe: tuple[int, TextIO]) -> None:
    read_end, stream = pipe
    sink = LogSink(stream, gather=60)  # the thread would wait a minute to write them
    for n in range(100):
        sink.write(f"line {n}\n")
    sink.close()
    assert read_lines(read_end, 100) == [f"line {n}".encode() for n in range(100)]
    sink.write("after close\n")
    assert sink.lines_lost == 1


def test_a_pipe_nobody_reads_goes_to_dev_null_and_its_lines_are_counted(
    pipe: tuple[int, TextIO],
) -> None:
    read_end, stream = pipe
    sink = LogSink(stream, gather=60)
    os.close(read_end)
    sink.write(b'{"event":"lost"}\n')
    sink.write("also lost\n")
    sink.drain()  # EPIPE, not raised
    assert sink.broken
    assert sink.lines_lost == 2
    # The descriptor itself now points at /dev/null, for every other writer too.
    assert os.fstat(stream.fileno()).st_rdev == DEVNULL
    os.write(stream.fileno(), b"no EPIPE any more\n")
    sink.write("console line\n")
    sink.write(b"json line\n")
    assert sink.lines_lost == 4
    sink.close()


def test_a_full_disk_loses_its_batch_and_the_next_one_is_tried() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is Linux's")
    with open("/dev/full", "w") as stream:
        sink = LogSink(stream, gather=60)
        sink.write(b"one\n")
        sink.write("two\n")
        sink.drain()
        sink.write("three\n")
        sink.drain()
        # ENOSPC: each batch fails by itself, and the stream is left where it was.
        assert sink.lines_lost == 3
        assert not sink.broken
        assert os.fstat(stream.fileno()).st_rdev == os.stat("/dev/full").st_rdev
        sink.close()


def test_a_reader_that_stalls_never_holds_up_who_logs(pipe: tuple[int, TextIO]) -> None:
    read_end, stream = pipe
    sink = LogSink(stream, limit=100, gather=0.001)
    line = "x" * 1000
    # Far more than the pipe holds (64 KiB) plus the queue: the log thread blocks in its
    # write, the queue fills, and the rest is dropped instead of waited for.
    writer = threading.Thread(
        target=lambda: [sink.write(f"{n:05} {line}\n") for n in range(2000)], daemon=True
    )
    writer.start()
    writer.join(10)
    assert not writer.is_alive(), "write() waited for the reader"
    assert sink.lines_lost > 1000
    # What was not dropped arrives whole and in order once the reader reads again.
    sink.close(timeout=0)
    kept = 2000 - sink.lines_lost
    numbers = [int(got.split()[0]) for got in read_lines(read_end, kept)]
    assert numbers == sorted(numbers)
    assert len(numbers) == kept


def test_connection_lines_are_sampled_under_load_and_counted() -> None:
    now = [0.0]
    sampler = ConnectionLineSampler(rate=10.0, burst=20.0, clock=lambda: now[0])

    def kept(event: str, method: str = "info") -> bool:
        try:
            sampler(None, method, {"event": event})
        except structlog.DropEvent:
            return False
        return True

    assert sum(kept("connected") for _ in range(100)) == 20  # the burst
    assert sampler.dropped == {"connected": 80}
    # Matches, warnings and errors are always written, whatever the load.
    assert all(kept("match_over") for _ in range(100))
    assert all(kept("connected", "warning") for _ in range(100))
    now[0] += 1.0
    assert sum(kept("disconnected") for _ in range(100)) == 10  # the rate
    assert sampler.dropped == {"connected": 80, "disconnected": 90}
