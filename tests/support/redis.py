"""A real redis-server on a free loopback port, for the cluster tests.

One server per test session, so one per pytest-xdist worker (it starts in ~50 ms, but
there is no need to pay that per test); every test gets an empty database (``FLUSHALL``
first) and its own key prefix.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from tests.support.processes import free_port, require_program


@attrs.define
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Kill it, as a crash would (no save: it comes back empty)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> None:
        """Start again, empty, on the same port (after ``stop``)."""
        self.process = _spawn(self.port, self.directory)


def _spawn(port: int, directory: Path) -> subprocess.Popen[bytes]:
    program = require_program("redis-server", "apt-get install redis-server; .ci/run does")
    process = subprocess.Popen(
        [
            program,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("redis-server did not start")


def start_redis() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="rps-redis-"))
    port = free_port()
    server = RedisServer(_spawn(port, directory), port, directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
