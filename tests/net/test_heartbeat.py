"""Keep-alive by sweeps: ping the quiet, cut the silent, leave the chatty alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.net.fastpath import PING_FRAME
from game_server.net.heartbeat import CUT_AFTER, PING_AFTER, sweep


@attrs.define
class FakeConnection:
    heard: bool = True
    quiet_sweeps: int = 0
    frames: list[bytes] = attrs.Factory(list)
    cut_for: str | None = None

    def ping(self) -> None:
        self.frames.append(PING_FRAME)

    def cut(self, reason: str) -> None:
        self.cut_for = reason


def test_a_quiet_connection_is_pinged_then_cut_if_it_stays_silent() -> None:
    quiet = FakeConnection()
    sweeps = 0
    while quiet.cut_for is None:
        sweep([quiet])
        sweeps += 1
        assert sweeps <= CUT_AFTER + 1
    # Heard at connect, so the first sweep only clears the flag; then PING_AFTER quiet
    # sweeps before the ping, and the cut CUT_AFTER quiet sweeps in.
    assert quiet.frames == [PING_FRAME]
    assert sweeps == 1 + CUT_AFTER
    assert quiet.quiet_sweeps == CUT_AFTER


def test_anything_heard_resets_the_count_and_answers_nothing() -> None:
    chatty = FakeConnection()
    for _ in range(1 + PING_AFTER):  # the sweep that clears "heard at connect", then quiet
        sweep([chatty])
    assert chatty.frames == [PING_FRAME]
    chatty.heard = True  # a frame (a pong, or any message) arrived
    for _ in range(PING_AFTER):
        sweep([chatty])
    assert chatty.cut_for is None
    assert chatty.frames == [PING_FRAME]  # the one ping before it was heard again
    for _ in range(10):
        chatty.heard = True
        sweep([chatty])
    assert chatty.cut_for is None
    assert chatty.quiet_sweeps == 0


def test_the_ping_frame_is_an_empty_unmasked_ping() -> None:
    assert PING_FRAME[0] == 0x89  # FIN + opcode 9
    assert PING_FRAME[1] == 0  # no mask bit, no payload


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])
async def test_pings_arrive_and_a_client_ping_is_answered(
    aiohttp_server: Callable[..., Any], fast: bool
) -> None:
    server: TestServer = await aiohttp_server(
        create_app(ServerConfig(heartbeat=0.2, fast_path=fast)), host="127.0.0.1"
    )
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.make_url("/applet/websocket"), autoping=False)
        await ws.ping(b"are you there")
        pong = await ws.receive(timeout=2)
        assert (pong.type, pong.data) == (WSMsgType.PONG, b"are you there")
        ping = await ws.receive(timeout=2)  # quiet for a whole interval: pinged
        assert ping.type is WSMsgType.PING
        await ws.pong(ping.data)
        await asyncio.sleep(0.35)  # answered: not cut at the next sweeps
        assert not ws.closed
        await ws.send_str('{"type": "hello"}')
        while (frame := await ws.receive(timeout=2)).type is WSMsgType.PING:
            await ws.pong(frame.data)  # still quiet between frames: pinged again
        assert frame.type is WSMsgType.TEXT
        assert '"hi"' in frame.data
        await ws.close()
