"""What a connection holds is given back when it leaves, over real sockets on 127.0.0.1.

Idle players are most of a server's connections, so what one of them leaves behind
matters as much as what it costs while it stays. Clients of every kind come and go
(guests that close, guests whose network goes, sockets that never say hello and are
cut, 2016 demo clients, players that finish a match), then every per-connection table
must be empty again and every per-connection object gone. The garbage collector is off
meanwhile: the objects must go when their last reference does, not at some later full
collection (which an idle server may not run for hours).
"""

from __future__ import annotations

import asyncio
import collections
import gc
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from bots.client import BotClient
from game_server.net.appkeys import ADDRESSES, CONNECTIONS, SERVICE
from game_server.net.socketio import SOCKETIO_PATH
from protocol import BotMode
from tests.conftest import ServerFactory
from tests.support.waiting import until

# The types one connection makes, server side, and the tables it has a row in.
PER_CONNECTION_TYPES = (
    "game_server.net.connection.Connection",
    "game_server.net.fastpath.DetachedSocket",
    "game_server.net.websocket.SocketFrames",
    "game_server.core.sessions.Session",
    "game_server.core.ratelimit.FloodGuard",
    "game_server.core.players.Player",
    "game_server.core.rooms.Room",
    "game_server.core.timers.Timer",
    "protocol.legacy.LegacyPeer",
    "aiohttp.web_protocol.RequestHandler",
    "aiohttp.web_request.Request",
    "game_server.net.fastpath.DirectWebSocketResponse",
)


def live_objects() -> collections.Counter[str]:
    """How many objects of each of ``PER_CONNECTION_TYPES`` exist, garbage included."""
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if name in PER_CONNECTION_TYPES:
            counts[name] += 1
    return counts


def tables(server: TestServer) -> dict[str, int]:
    """Every table a connection (or its player) has a row in while it stays."""
    app = server.app
    service = app[SERVICE]
    guests = service.presence.guests
    assert server.runner is not None
    assert server.runner.server is not None
    return {
        "connections": len(app[CONNECTIONS]),
        "aiohttp connections": len(server.runner.server.connections),
        "addresses": len(app[ADDRESSES].counts),
        "sessions": len(service.sessions),
        "players remembered": len(service.roster),
        "players online": service.online,
        "relay": len(service.context.relay),  # type: ignore[arg-type]
        "queue": service.waiting,
        "rooms": len(service.rooms),
        "guest buckets": 0 if guests is None else len(guests),
        "timers": service.timers.pending,
    }


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_collector")
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])
async def test_every_connection_gives_back_what_it_held(
    start_server: ServerFactory, http: aiohttp.ClientSession, fast: bool
) -> None:
    server = await start_server(
        {"heartbeat": None, "fast_path": fast},
        forget_after=0.2,  # an offline player, guest or not, is forgotten this soon
        hello_timeout=0.5,
        guest_rate=1000.0,
        guest_burst=1000.0,  # a bucket is full again within a second
        bot_after=0.1,
        bot_think=(0.0, 0.0),
    )
    empty = tables(server)
    assert set(empty.values()) == {0}
    before = live_objects()
    url = server.make_url("/applet/websocket")

    async def guest() -> aiohttp.ClientWebSocketResponse:
        ws = await http.ws_connect(url)
        await ws.send_str('{"type":"hello"}')
        hi = await ws.receive_json()
        assert hi["type"] == "hi"
        return ws

    closing = [await guest() for _ in range(40)]
    dropped = [await guest() for _ in range(20)]
    silent = [await http.ws_connect(url) for _ in range(10)]
    demo = [
        await http.ws_connect(server.make_url(SOCKETIO_PATH + "?EIO=3&transport=websocket"))
        for _ in range(10)
    ]
    bots = [BotClient(str(url), mode=BotMode.NOW, think=(0.0, 0.0)) for _ in range(4)]
    playing = [asyncio.create_task(bot.play(1, session=http)) for bot in bots]
    await until(lambda: len(server.app[CONNECTIONS]) == 84, 10, what="84 connections")
    # The count sees them all: 84 connections, 64 players, their sessions...
    during = live_objects()
    for name in (
        "game_server.net.connection.Connection",
        "game_server.core.sessions.Session",
        "game_server.net.websocket.SocketFrames",
        # Detached from aiohttp on the fast path; held by it off the fast path.
        "game_server.net.fastpath.DetachedSocket"
        if fast
        else "aiohttp.web_protocol.RequestHandler",
    ):
        assert during[name] - before[name] == 84, name
    player = "game_server.core.players.Player"
    assert during[player] - before[player] >= 64
    assert tables(server)["addresses"] == 1  # all from 127.0.0.1

    for ws in closing:
        await ws.close()
    for ws in dropped:
        ws._response.connection.transport.abort()  # type: ignore[union-attr]
    for ws in silent:  # the server cuts these at the hello deadline
        message = await ws.receive()
        assert message.type in (WSMsgType.TEXT, WSMsgType.CLOSE)
    for ws in demo:
        await ws.close()
    reports = await asyncio.gather(*playing)
    assert [report.matches for report in reports] == [1, 1, 1, 1]
    for ws in (*closing, *dropped, *silent, *demo):
        await ws.close()

    await until(lambda: tables(server) == empty, 10, what="every per-connection table empty")
    await asyncio.sleep(0.1)  # aiohttp's own request tasks end a turn after the handler
    after = live_objects()
    kept = {name: after[name] - before[name] for name in PER_CONNECTION_TYPES}
    assert kept == dict.fromkeys(PER_CONNECTION_TYPES, 0)
