"""A hand-driven WebSocket client for the end-to-end tests: sends dicts, reads dicts."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from tests.support.processes import close_code

READ_TIMEOUT = 5.0


class Player:
    """A hand-driven client: sends dicts, reads dicts, fails loudly on surprises."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.hi: dict[str, Any] = {}

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(orjson.dumps(message).decode())

    async def recv(self) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=READ_TIMEOUT)
        assert frame.type is WSMsgType.TEXT, (frame.type, frame.data, self.ws.close_code)
        message: dict[str, Any] = orjson.loads(frame.data)
        return message

    async def expect(self, kind: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        while True:
            message = await self.recv()
            if message["type"] in skip:
                continue
            assert message["type"] == kind, message
            return message

    async def closed(self) -> int | None:
        """Read until the server closes; returns the close code."""
        return await close_code(self.ws, READ_TIMEOUT)


async def connect(
    http: aiohttp.ClientSession, server: TestServer, name: str, token: str | None = None
) -> Player:
    ws = await http.ws_connect(server.make_url("/applet/websocket"))
    player = Player(ws)
    await player.send(type="hello", name=name, id=f"hello-{name}", token=token)
    player.hi = await player.expect("hi")
    assert player.hi["ref"] == f"hello-{name}"
    assert player.hi["name"] == name
    return player
