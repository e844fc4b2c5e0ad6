"""A flood of messages, in either dialect: answered, then warned, then closed with 1008.

The same flood guard meters every dialect; only the words differ. Each dialect below says
how to connect, what one cheap request is, and how to read its frames back as
``reply``, ``rate_limited`` or ``bye:<reason>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import attrs
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from bots.client import BotClient
from game_server.net.socketio import SOCKETIO_PATH
from protocol import BotMode
from tests.conftest import ServerFactory
from tests.support.wire import connect


@attrs.frozen
class Dialect:
    open: Callable[[aiohttp.ClientSession, TestServer], Awaitable[aiohttp.ClientWebSocketResponse]]
    request: str  # one cheap message that gets one reply
    read: Callable[[str], str]  # a frame as "reply", an error code, or "bye:<reason>"


async def native_open(
    http: aiohttp.ClientSession, server: TestServer
) -> aiohttp.ClientWebSocketResponse:
    return (await connect(http, server, "Ann")).ws


def native_read(frame: str) -> str:
    message = orjson.loads(frame)
    if message["type"] == "error":
        return str(message["code"])
    if message["type"] == "bye":
        return f"bye:{message['reason']}"
    return "reply" if message["type"] == "pong" else message["type"]


async def legacy_open(
    http: aiohttp.ClientSession, server: TestServer
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(server.make_url(SOCKETIO_PATH + "?EIO=3&transport=websocket"))
    for _ in range(2):  # engine.io's open packet, then socket.io's connect
        await ws.receive(timeout=5)
    return ws


def legacy_read(frame: str) -> str:
    if frame.startswith("42"):
        name, data = orjson.loads(frame[2:])
        return str(data["code"]) if name == "error" else f"{name}:{data['reason']}"
    return "reply" if frame == "3" else frame  # engine.io's pong


DIALECTS = {
    "native": Dialect(native_open, '{"type": "ping"}', native_read),
    "socketio": Dialect(legacy_open, "2", legacy_read),  # an engine.io ping
}


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
async def test_flooding_gets_warnings_then_a_1008_close(
    start_server: ServerFactory, http: aiohttp.ClientSession, dialect: Dialect
) -> None:
    server = await start_server()
    ws = await dialect.open(http, server)
    for _ in range(300):
        await ws.send_str(dialect.request)
    seen: dict[str, int] = {}
    while True:
        frame = await ws.receive(timeout=5)
        if frame.type is not WSMsgType.TEXT:
            break
        key = dialect.read(frame.data)
        seen[key] = seen.get(key, 0) + 1
    assert ws.close_code == 1008
    assert seen["rate_limited"] >= 10
    assert seen["bye:flooding"] == 1
    assert 30 <= seen["reply"] <= 45  # about the burst of 40 (a hello spent one)


async def _ping_flood(http: aiohttp.ClientSession, server: TestServer) -> tuple[int | None, str]:
    """WebSocket ping frames back to back, as fast as the socket takes them; the close
    code and the bye reason the server answered with."""
    ws = (await connect(http, server, "Pinger")).ws
    bye = ""

    async def read() -> None:
        nonlocal bye
        while True:
            frame = await ws.receive(timeout=10)
            if frame.type is not WSMsgType.TEXT:
                return
            message = orjson.loads(frame.data)
            if message["type"] == "bye":
                bye = message["reason"]

    reader = asyncio.create_task(read())
    try:
        for _ in range(20_000):
            if ws.closed or reader.done():
                break
            await ws.ping(b"x")
    except (ConnectionError, RuntimeError):
        pass  # the server closed while we were still flooding
    await asyncio.wait_for(reader, 10)
    return ws.close_code, bye


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])
async def test_a_ping_flood_is_closed_with_1008_while_an_honest_bot_plays_on(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    server = await start_server({"fast_path": fast}, bot_think=(0.0, 0.0), bot_after=0.1)
    honest = BotClient(str(server.make_url("/applet/websocket")), mode=BotMode.NOW)
    playing = asyncio.create_task(honest.play(6, session=http))
    floods = await asyncio.gather(*(_ping_flood(http, server) for _ in range(3)))
    assert floods == [(1008, "flooding")] * 3
    report = await asyncio.wait_for(playing, 30)
    assert report.matches == 6
    assert report.violation_count == 0, report.violations
    assert report.error_count == 0, report.errors
    latencies = sorted(report.choice_latency)
    assert latencies[int(len(latencies) * 0.99) - 1] < 0.25, latencies[-5:]
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_limited_total{limit="flooding"} 3.0' in metrics


async def test_honest_websocket_pings_are_answered(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """A ping a second (a browser's or a library's keep-alive) is answered every time."""
    server = await start_server()
    player = await connect(http, server, "Keepalive")
    for _ in range(5):
        await player.ws.ping(b"k")
        await asyncio.sleep(0.05)
    await player.send(type="ping", id="last")
    assert (await player.expect("pong"))["ref"] == "last"
    assert not player.ws.closed
