"""The log sink: lines that cannot be written are counted, never raised."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from game_server.logs import LogSink

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


def test_text_and_json_lines_arrive_whole_and_in_order(pipe: tuple[int, TextIO]) -> None:
    read_end, stream = pipe
    sink = LogSink(stream)
    sink.write("first\n")
    sink.write(b'{"event":"second"}\n')
    sink.write("third\n")
    # Each line is flushed as it is written: nothing waits in a buffer.
    assert os.read(read_end, 1000) == b'first\n{"event":"second"}\nthird\n'
    assert sink.lines_lost == 0


def test_a_pipe_nobody_reads_goes_to_dev_null_and_its_lines_are_counted(
    pipe: tuple[int, TextIO],
) -> None:
    read_end, stream = pipe
    sink = LogSink(stream)
    os.close(read_end)
    sink.write(b'{"event":"lost"}\n')  # EPIPE, not raised
    assert sink.broken
    assert sink.lines_lost == 1
    # The descriptor itself now points at /dev/null, for every other writer too.
    assert os.fstat(stream.fileno()).st_rdev == DEVNULL
    os.write(stream.fileno(), b"no EPIPE any more\n")
    sink.write("console line\n")
    sink.write(b"json line\n")
    assert sink.lines_lost == 3


def test_a_full_disk_loses_the_line_and_the_next_one_is_tried() -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is Linux's")
    with open("/dev/full", "w") as stream:
        sink = LogSink(stream)
        sink.write(b"one\n")
        sink.write("two\n")
        # ENOSPC: each line fails by itself, and the stream is left where it was.
        assert sink.lines_lost == 2
        assert not sink.broken
        assert os.fstat(stream.fileno()).st_rdev == os.stat("/dev/full").st_rdev
