"""What operators rely on: settings precedence, TLS, systemd notify, graceful drain,
readiness, heartbeats, SO_REUSEPORT and a log reader that stalls or goes, each with real
processes and sockets."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import ssl
import struct
import termios
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from bots.client import BotClient
from game_server.cli.assembly import create_app
from game_server.cli.command import server_command
from game_server.cli.settings import config_from, parse_settings
from game_server.config import ServerConfig
from game_server.core.match import MatchRules
from game_server.core.service import ServiceConfig
from protocol import BotMode
from tests.support.processes import (
    FAST_GAME,
    PYTHON,
    ServerProcess,
    launch,
    self_signed_certificate,
)

# ---------------------------------------------------------------- settings


def test_command_line_beats_environment_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "rps.toml"
    config.write_text('best-of = 5\nround_seconds = 7.5\nbot-strategy = "cycle"\nport = 1111\n')
    environ = {"RPS_CONFIG": str(config), "RPS_ROUND_SECONDS": "4", "PORT": "2222"}
    args = parse_settings(["--round-seconds", "3"], environ)
    assert args.round_seconds == 3.0  # command line
    assert args.best_of == 5  # file
    assert args.bot_strategy == "cycle"  # file
    assert args.port == 2222  # PORT beats the file
    args = parse_settings([], {**environ, "RPS_PORT": "3333"})
    assert (args.round_seconds, args.port) == (4.0, 3333)  # environment beats file and PORT
    args = parse_settings(["--config", str(config)], {})
    assert args.port == 1111
    assert parse_settings([], {}).port == 9595


def test_environment_values_are_checked_like_flags() -> None:
    assert parse_settings([], {"RPS_REUSE_PORT": "yes"}).reuse_port is True
    assert parse_settings([], {"RPS_BOT_THINK": "0.1-0.2"}).bot_think == (0.1, 0.2)
    assert config_from(parse_settings([], {"RPS_KEEP_MATCHES": "90"})).keep_matches_days == 90
    assert config_from(parse_settings([], {})).keep_matches_days is None
    for bad in (
        {"RPS_BEST_OF": "0"},
        {"RPS_LOG_FORMAT": "xml"},
        {"RPS_REUSE_PORT": "maybe"},
        {"RPS_PORT": "99999"},
        {"RPS_ROUND_SECONDS": "inf"},
        {"RPS_KEEP_MATCHES": "0"},
    ):
        with pytest.raises(SystemExit) as exited:
            parse_settings([], bad)
        assert exited.value.code == 2


def test_bad_config_files_are_refused(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("best-of = \n")
    for path in (unknown, broken, tmp_path / "missing.toml"):
        with pytest.raises(SystemExit) as exited:
            parse_settings(["--config", str(path)], {})
        assert exited.value.code == 2
    with pytest.raises(SystemExit):
        parse_settings(["--certfile", "cert.pem"], {})  # without --keyfile


# ---------------------------------------------------------------- real processes


async def test_tls_serves_wss(tmp_path: Path, processes: list[ServerProcess]) -> None:
    cert, key = self_signed_certificate(tmp_path)
    proc = await launch(
        "--port",
        "0",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        "--round-pause",
        "0",
        "--bot-think",
        "0",
    )
    processes.append(proc)
    assert proc.url.startswith("wss://")
    trusted = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as http:
        report = await BotClient(proc.url, mode=BotMode.NOW).play(1, session=http)
        assert (report.matches, report.violations, report.errors) == (1, [], [])
        health = await (await http.get(f"{proc.http}/healthz")).json()
        assert health["status"] == "ok"
    # A client that does not trust the certificate is refused.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.ws_connect(proc.url)


async def test_systemd_notify_ready_then_stopping(
    tmp_path: Path, processes: list[ServerProcess]
) -> None:
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        proc = await launch("--port", "0", env={"NOTIFY_SOCKET": path})
        processes.append(proc)
        ready = (await asyncio.wait_for(loop.sock_recv(listener, 4096), 10)).decode()
        assert "READY=1" in ready.split("\n")
        async with aiohttp.ClientSession() as http:
            assert (await http.get(f"{proc.http}/readyz")).status == 200
        proc.process.send_signal(signal.SIGTERM)
        stopping = (await asyncio.wait_for(loop.sock_recv(listener, 4096), 10)).decode()
        assert "STOPPING=1" in stopping.split("\n")
        assert await proc.exit_code() == 0
    finally:
        listener.close()


async def next_json(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        frame = await ws.receive(timeout=10)
        assert frame.type is WSMsgType.TEXT, (frame.type, ws.close_code)
        message: dict[str, Any] = orjson.loads(frame.data)
        if message["type"] == kind:
            return message


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    frame = await ws.receive(timeout=10)
    assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), frame
    return ws.close_code


async def hello(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url)
    await ws.send_str('{"type": "hello"}')
    await next_json(ws, "hi")
    return ws


async def test_sigterm_drains_matches_then_exits(processes: list[ServerProcess]) -> None:
    proc = await launch(
        "--port",
        "0",
        "--drain-seconds",
        "20",
        "--round-seconds",
        "10",
        "--round-pause",
        "0",
        "--bot-after",
        "60",
    )
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        ann, bob, cy, dee = [await hello(http, proc.url) for _ in range(4)]
        for ws in (ann, bob):
            await ws.send_str('{"type": "join"}')
        start = await next_json(ann, "start")
        await next_json(bob, "start")
        await cy.send_str('{"type": "join", "bot": "never"}')
        await next_json(cy, "queued")

        proc.process.send_signal(signal.SIGTERM)
        # Queued and idle players are sent away at once...
        for ws in (cy, dee):
            assert await closed_with_bye(ws) == 1001
        # ...nobody new gets in, and readiness says so while liveness stays up...
        assert (await http.get(f"{proc.http}/readyz")).status == 503
        assert (await (await http.get(f"{proc.http}/healthz")).json())["status"] == "draining"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(proc.url)
        assert refused.value.status == 503
        # ...while the match in progress plays to its end.
        match_id = start["match_id"]
        for round_number in (1, 2):
            await ann.send_str(
                orjson.dumps(
                    {
                        "type": "choice",
                        "match_id": match_id,
                        "round": round_number,
                        "choice": "rock",
                    }
                ).decode()
            )
            await bob.send_str(
                orjson.dumps(
                    {
                        "type": "choice",
                        "match_id": match_id,
                        "round": round_number,
                        "choice": "scissors",
                    }
                ).decode()
            )
            result = await next_json(ann, "result")
        assert result["match_over"] is True
        assert (result["winner"], result["reason"]) == ("you", "rounds")
        for ws in (ann, bob):
            assert await closed_with_bye(ws) == 1001
    assert await proc.exit_code(5) == 0
    assert any(e["event"] == "drained" for e in proc.events)


async def test_drain_timeout_closes_matches_still_running(processes: list[ServerProcess]) -> None:
    proc = await launch("--port", "0", "--drain-seconds", "1", "--round-seconds", "30")
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        ann = await hello(http, proc.url)
        await ann.send_str('{"type": "join", "bot": "now"}')
        await next_json(ann, "start")
        started = asyncio.get_running_loop().time()
        proc.process.send_signal(signal.SIGTERM)
        assert await closed_with_bye(ann) == 1001
        assert 0.8 < asyncio.get_running_loop().time() - started < 5
    assert await proc.exit_code() == 0
    assert any(e["event"] == "drain_cut_short" for e in proc.events)


async def test_second_signal_stops_at_once(processes: list[ServerProcess]) -> None:
    proc = await launch("--port", "0", "--drain-seconds", "60", "--round-seconds", "30")
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        ann = await hello(http, proc.url)
        await ann.send_str('{"type": "join", "bot": "now"}')
        await next_json(ann, "start")
        proc.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        proc.process.send_signal(signal.SIGINT)
        assert await closed_with_bye(ann) == 1001
    assert await proc.exit_code(5) == 0


def listening_event(log: BinaryIO) -> dict[str, Any]:
    for line in log:
        event: dict[str, Any] = orjson.loads(line)
        if event["event"] == "listening":
            return event
    raise AssertionError("the server exited before listening")


async def lines_lost_reported(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """/healthz once it counts lost log lines (the log thread writes every 20 ms)."""
    for _ in range(100):
        health: dict[str, Any] = await (await http.get(url)).json()
        if health["log_lines_lost"]:
            return health
        await asyncio.sleep(0.05)  # another process: nothing to wait on but time
    raise AssertionError("no lost log lines reported in 5 s")


@contextlib.asynccontextmanager
async def server_logging_to_a_pipe(
    pipe_bytes: int | None = None,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, BinaryIO]]:
    """A server whose stderr is a pipe (of ``pipe_bytes`` if given) read up to "listening"
    and then never again; yields the process, its host:port and the pipe's read end
    (closed at the end if not before)."""
    read_end, write_end = os.pipe()
    if pipe_bytes is not None:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, pipe_bytes)
    process = await asyncio.create_subprocess_exec(
        *server_command(*FAST_GAME, "--drain-seconds", "1"), stderr=write_end
    )
    os.close(write_end)
    log = os.fdopen(read_end, "rb")
    try:
        listening = await asyncio.wait_for(asyncio.to_thread(listening_event, log), 15)
        yield process, f"127.0.0.1:{listening['port']}", log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


# One page. The kernel fills a pipe a page per write unless the write's tail fits the last
# page, so a full default pipe (16 pages) may hold anywhere from ~32 to 64 KiB: its unread
# count cannot tell "full" from "not yet". One page is full after a few lines.
ONE_PAGE = 4096


def unread_bytes(log: BinaryIO) -> int:
    unread: int = struct.unpack("i", fcntl.ioctl(log.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    return unread


async def pipe_stays_full(log: BinaryIO) -> int:
    """Wait until the pipe holds lines and has stopped taking more for 0.3 s (the log thread
    writes every 20 ms): its writer is blocked. Returns what the pipe holds."""
    held, still = -1, 0
    for _ in range(100):
        unread = unread_bytes(log)
        still = still + 1 if unread == held and unread > 0 else 0
        if still == 6:
            return unread
        held = unread
        await asyncio.sleep(0.05)  # another process: nothing to wait on but time
    raise AssertionError(f"the pipe never filled up: it holds {held} bytes")


async def play_a_round(http: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    """Hello, a match against a house bot, and its first round; the player's socket."""
    ann = await hello(http, f"ws://{base}/applet/websocket")
    await ann.send_str('{"type": "join", "bot": "now"}')
    start = await next_json(ann, "start")
    await ann.send_str(
        orjson.dumps(
            {"type": "choice", "match_id": start["match_id"], "round": 1, "choice": "rock"}
        ).decode()
    )
    assert (await next_json(ann, "result"))["round"] == 1
    return ann


async def test_a_log_pipe_nobody_reads_stops_neither_the_game_nor_the_shutdown() -> None:
    # journald restarted, or the `| head` a server was piped into exited: its stderr is a
    # pipe without a reader, and every log line fails with EPIPE. The first signal's log
    # line once failed before the stop was set, so no signal could stop the server.
    async with server_logging_to_a_pipe() as (process, base, log), aiohttp.ClientSession() as http:
        log.close()  # from here on every line the server writes fails
        ann = await play_a_round(http, base)
        health = await lines_lost_reported(http, f"http://{base}/healthz")
        metrics = await (await http.get(f"http://{base}/metrics")).text()
        (counter,) = [
            line for line in metrics.splitlines() if line.startswith("rps_log_lines_lost_total")
        ]
        # The /healthz request's own access line was lost too, after it answered.
        assert float(counter.split()[1]) > health["log_lines_lost"]
        process.send_signal(signal.SIGTERM)
        assert await closed_with_bye(ann) == 1001
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_a_log_reader_that_stalls_holds_up_neither_the_game_nor_the_shutdown() -> None:
    # pm2 or journald falling behind: the pipe fills up, and a write to it blocks until
    # someone reads. Once, the loop itself made that write.
    async with (
        asyncio.timeout(30),  # a loop blocked on the pipe hangs the hellos: fail, not hang
        server_logging_to_a_pipe(ONE_PAGE) as (process, base, log),
        aiohttp.ClientSession() as http,
    ):
        url = f"ws://{base}/applet/websocket"
        for _ in range(50):  # ~4 lines of ~250 bytes each: a dozen times what the pipe holds
            await (await hello(http, url)).close()
        assert await pipe_stays_full(log) <= ONE_PAGE
        ann = await play_a_round(http, base)
        assert (await http.get(f"http://{base}/healthz")).status == 200
        process.send_signal(signal.SIGTERM)
        assert await closed_with_bye(ann) == 1001
        # The last lines cannot be written either: the exit waits 2 s for them, not forever.
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def closed_with_bye(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    assert await next_json(ws, "bye") == {"type": "bye", "reason": "shutdown"}
    return await closed_with(ws)


async def test_reuse_port_lets_two_processes_share_a_port(processes: list[ServerProcess]) -> None:
    first = await launch("--port", "0", "--reuse-port")
    processes.append(first)
    second = await launch("--port", str(first.port), "--reuse-port")
    processes.append(second)
    assert second.port == first.port
    without = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "game_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(first.port),
        "--db",
        ":memory:",
        stderr=asyncio.subprocess.PIPE,
    )
    assert await asyncio.wait_for(without.wait(), 15) != 0


# ---------------------------------------------------------------- heartbeats, in process


@pytest.fixture
async def heartbeat_server(
    aiohttp_server: Callable[..., Any],
) -> TestServer:
    config = ServerConfig(
        # A cut peer keeps its seat for the reconnect grace, then forfeits: short here.
        service=ServiceConfig(
            rules=MatchRules(round_seconds=30.0), bot_after=60.0, reconnect_grace=0.5
        ),
        heartbeat=0.4,
    )
    server: TestServer = await aiohttp_server(create_app(config), host="127.0.0.1")
    return server


async def test_silent_peer_is_dropped_and_its_match_forfeited(
    heartbeat_server: TestServer,
) -> None:
    url = heartbeat_server.make_url("/applet/websocket")
    async with aiohttp.ClientSession() as http:
        mute = await http.ws_connect(url, autoping=False)  # never answers pings
        await mute.send_str('{"type": "hello"}')
        awake = await hello(http, str(url))
        await mute.send_str('{"type": "join"}')
        await awake.send_str('{"type": "join"}')
        await next_json(awake, "start")
        # Only read the awake socket: aiohttp answers its pings while we wait.
        result = await next_json(awake, "result")
        assert (result["match_over"], result["reason"]) == (True, "opponent_left")
        health = await (await http.get(heartbeat_server.make_url("/healthz"))).json()
        assert health["players"] == 1


async def test_access_and_game_logs_are_json_with_ids(processes: list[ServerProcess]) -> None:
    proc = await launch("--port", "0")
    processes.append(proc)
    async with aiohttp.ClientSession() as http:
        await http.get(f"{proc.http}/healthz", headers={"X-Request-Id": "req-42"})
        ws = await http.ws_connect(proc.url, headers={"X-Forwarded-For": "203.0.113.9"})
        await ws.send_str('{"type": "hello"}')
        hi = await next_json(ws, "hi")
        await ws.close()
    proc.process.send_signal(signal.SIGTERM)
    assert await proc.exit_code() == 0
    await asyncio.sleep(0.1)  # the reader task drains stderr
    access = [e for e in proc.events if e["event"] == "http"]
    assert {"path": "/healthz", "status": 200, "request_id": "req-42"}.items() <= access[0].items()
    upgrade = next(e for e in access if e["path"] == "/applet/websocket")
    assert upgrade["status"] == 101
    assert upgrade["forwarded_for"] == "203.0.113.9"
    hello = next(e for e in proc.events if e["event"] == "hello")
    assert hello["player_id"] == hi["player_id"]
    assert hello["request_id"] == upgrade["request_id"]
    # Frames are handled in aiohttp's read callback, the close in the handler task: the
    # socket's last line still carries what its first frames bound.
    gone = next(e for e in proc.events if e["event"] == "disconnected")
    assert (gone["player_id"], gone["request_id"]) == (hi["player_id"], upgrade["request_id"])
    assert all("timestamp" in e and "level" in e for e in proc.events)
