"""A flood of messages, in either dialect: answered, then warned, then closed with 1008.

The same flood guard meters every dialect; only the words differ. Each dialect below says
how to connect, what one cheap request is, and how to read its frames back as
``reply``, ``rate_limited`` or ``bye:<reason>``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import attrs
import orjson
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from game_server.net.socketio import SOCKETIO_PATH
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
