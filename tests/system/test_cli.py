"""The command lines as an operator runs them: real processes, real ports on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.processes import FAST_GAME, PYTHON, ServerProcess, free_port, launch


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    proc = await launch("--port", "0", *FAST_GAME)
    yield proc
    if proc.process.returncode is None:
        proc.process.kill()
        await proc.process.wait()


def test_help_lists_every_option() -> None:
    out = subprocess.run(
        [PYTHON, "-m", "game_server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (
        "--host",
        "--port",
        "--best-of",
        "--round-seconds",
        "--round-pause",
        "--bot-after",
        "--bot-think",
        "--bot-strategy",
        "--log-format",
        "--drain-seconds",
        "--certfile",
        "--keyfile",
        "--reuse-port",
        "--config",
    ):
        assert option in out
    # Every option also names its environment variable.
    for name in (
        "RPS_PORT",
        "RPS_DRAIN_SECONDS",
        "RPS_CERTFILE",
        "RPS_REUSE_PORT",
        "RPS_CONFIG",
        "RPS_LOG_FORMAT",
        "RPS_BOT_THINK",
    ):
        assert name in out


@pytest.mark.parametrize(
    "args",
    [
        ["--bot-think", "3-1"],
        ["--best-of", "0"],
        ["--bot-strategy", "psychic"],
        ["--round-seconds", "-1"],
    ],
)
def test_bad_options_are_refused(args: list[str]) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "game_server", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "error" in result.stderr


async def test_server_process_serves_matches_and_stops_on_sigterm(
    server: ServerProcess,
) -> None:
    bots = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "bots",
        "play",
        "--url",
        server.url,
        "--clients",
        "4",
        "--matches",
        "3",
        "--seed",
        "1",
        stdout=asyncio.subprocess.PIPE,
    )
    house = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "bots",
        "play",
        "--url",
        server.url,
        "--clients",
        "1",
        "--matches",
        "2",
        "--opponents",
        "now",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(bots.communicate(), 60)
    house_out, _ = await asyncio.wait_for(house.communicate(), 60)
    assert bots.returncode == 0, out
    assert house.returncode == 0, house_out
    assert b"matches played 12" in out
    assert b"errors 0  violations 0" in out
    assert b"matches played 2" in house_out
    async with aiohttp.ClientSession() as http:
        health = await (await http.get(f"http://127.0.0.1:{server.port}/healthz")).json()
    assert health["matches_finished"] == 4 / 2 * 3 + 2
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.process.wait(), 10) == 0


async def test_sigterm_closes_open_sockets_with_going_away(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url) as ws:
        await ws.send_str('{"type": "hello"}')
        assert (await ws.receive_json())["type"] == "hi"
        server.process.send_signal(signal.SIGTERM)
        assert await ws.receive_json(timeout=10) == {"type": "bye", "reason": "shutdown"}
        frame = await ws.receive(timeout=10)
        assert frame.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1001
    assert await asyncio.wait_for(server.process.wait(), 10) == 0


async def test_port_comes_from_the_environment() -> None:
    port = free_port()
    proc = await launch(env={"PORT": str(port)})
    try:
        assert proc.port == port
    finally:
        proc.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.process.wait(), 10) == 0
