"""Real server processes and TLS material for the tests that run the command line, and
the one rule for tests that need a program from outside the project (``require_program``)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from game_server.cli.command import server_command

PYTHON = sys.executable
# Short rounds, no pauses, instant house bots: whole matches in milliseconds.
FAST_GAME = ("--round-seconds", "2", "--round-pause", "0", "--bot-think", "0", "--bot-after", "0.1")


# Set (to anything but "" or "0") by .ci/run, which installs every program the suite runs:
# there a missing program is a broken CI machine, not a reason to skip.
REQUIRE_EXTERNAL = "RPS_REQUIRE_EXTERNAL"


def external_required() -> bool:
    return os.environ.get(REQUIRE_EXTERNAL, "") not in ("", "0")


def require_program(name: str, hint: str = "", *, path: Path | None = None) -> str:
    """The path of the program ``name`` (on PATH, or exactly ``path`` when given).

    Without it the calling test skips, or fails when ``RPS_REQUIRE_EXTERNAL`` is set.
    Call it from the test or a fixture, never at import: a failure there would stop the
    whole run at collection.
    """
    if path is not None:
        found = str(path) if os.access(path, os.X_OK) and path.is_file() else None
    else:
        found = shutil.which(name)
    if found is not None:
        return found
    where = str(path) if path is not None else f"{name} on PATH"
    reason = f"{where} not found" + (f" ({hint})" if hint else "")
    if external_required():
        pytest.fail(
            f"{reason}; {REQUIRE_EXTERNAL} is set, so this fails instead of skipping", pytrace=False
        )
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``python -m game_server`` on 127.0.0.1; its JSON log events collect in ``events``."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, scheme: str) -> None:
        self.process = process
        self.port = port
        self.url = f"{scheme}://127.0.0.1:{port}/applet/websocket"
        self.http = f"{'https' if scheme == 'wss' else 'http'}://127.0.0.1:{port}"
        self.events: list[dict[str, Any]] = []

    async def read_events(self) -> None:
        # Always drained, so a chatty server never blocks on a full stderr pipe.
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.events.append(_event(line))

    async def exit_code(self, within: float = 10) -> int:
        return await asyncio.wait_for(self.process.wait(), within)

    async def stop(self, within: float = 10) -> int:
        """SIGTERM and wait for the exit code; SIGKILL if it does not go in time."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return await self.exit_code(within)
            except TimeoutError:
                self.process.kill()
        return await self.process.wait()


async def close_code(ws: aiohttp.ClientWebSocketResponse, read_timeout: float = 5.0) -> int | None:
    """Read until the server closes the socket (skipping anything still queued)."""
    while True:
        frame = await ws.receive(timeout=read_timeout)
        if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return ws.close_code


async def launch(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start the server (``server_command``) and return once its "listening" event names
    the port."""
    process = await asyncio.create_subprocess_exec(
        *server_command(*args, env=env),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    async with asyncio.timeout(15):
        while True:
            line = await process.stderr.readline()
            assert line, "server exited before listening"
            event = _event(line)
            if event["event"] == "listening":
                server = ServerProcess(process, event["port"], event["scheme"])
                server.events.append(event)
                asyncio.get_running_loop().create_task(server.read_events())
                return server


def _event(line: bytes) -> dict[str, Any]:
    """A JSON log line as its event; anything else (a warning a library printed, a
    traceback) as ``{"event": "raw", "text": ...}``, so that it shows instead of crashing
    the reader."""
    try:
        event: dict[str, Any] = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"event": "raw", "text": line.decode(errors="replace").rstrip()}
    return event


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
