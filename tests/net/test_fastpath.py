"""Text frames from aiohttp's parser straight to a sink, over real sockets on 127.0.0.1.

A raw client writes exact frame sequences in one go, so the tests decide what sits in
aiohttp's queue when each frame is parsed.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import WSMessage, WSMsgType, web
from aiohttp.test_utils import TestServer

from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.net import app as app_module
from game_server.net import fastpath
from game_server.net.fastpath import DirectWebSocketResponse

ServerFactory = Callable[..., Awaitable[TestServer]]
TEXT, CLOSE, PING = 0x1, 0x8, 0x9


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, unfragmented client frame (RFC 6455 5.2), payload under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


class Recorder:
    """The server side: one socket with a sink, a gate before it reads, what it saw."""

    def __init__(self, *, use_direct: bool = True) -> None:
        self.use_direct = use_direct
        self.gate = asyncio.Event()
        self.seen: list[tuple[Any, ...]] = []
        self.ws: DirectWebSocketResponse | None = None
        self.done = asyncio.Event()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = DirectWebSocketResponse(use_direct=self.use_direct, autoping=False, decode_text=False)
        self.ws = ws
        await ws.prepare(request)

        def sink(data: bytes) -> None:
            # No task: the parser's own call, from the loop's read callback.
            self.seen.append(("sink", data, asyncio.current_task() is None))

        ws.set_sink(sink)
        await self.gate.wait()
        async for message in ws:
            self.seen.append(("receive", message.type, message.data))
        self.done.set()
        return ws

    def buffered(self) -> int:
        assert self.ws is not None
        assert self.ws._reader is not None
        return len(self.ws._reader._buffer)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - some conditions are aiohttp's state
            await asyncio.sleep(0.005)


@pytest.fixture
async def serve(
    aiohttp_server: ServerFactory,
) -> AsyncIterator[Callable[..., Awaitable[tuple[Recorder, asyncio.StreamWriter]]]]:
    writers: list[asyncio.StreamWriter] = []

    async def start(
        pipelined: bytes = b"", **options: Any
    ) -> tuple[Recorder, asyncio.StreamWriter]:
        recorder = Recorder(**options)
        app = web.Application()
        app.router.add_get("/ws", recorder.handler)
        server = await aiohttp_server(app, host="127.0.0.1")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writers.append(writer)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            + pipelined
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return recorder, writer

    yield start
    for writer in writers:
        writer.close()


def test_this_aiohttp_release_is_one_the_direct_path_was_checked_on() -> None:
    # Fails after an aiohttp upgrade: read fastpath against the new release's
    # _post_start and WebSocketDataQueue, then add it to CHECKED_RELEASES.
    assert fastpath.SUPPORTED, aiohttp.__version__


async def test_text_frames_go_to_the_sink_in_the_read_callback(serve: Any) -> None:
    recorder, writer = await serve()
    recorder.gate.set()
    writer.write(client_frame(TEXT, b"one") + client_frame(TEXT, b"two"))
    await until(lambda: len(recorder.seen) == 2)
    assert recorder.ws is not None
    assert recorder.ws.direct
    assert recorder.seen == [("sink", b"one", True), ("sink", b"two", True)]


async def test_frames_behind_a_queued_control_frame_keep_their_order(serve: Any) -> None:
    recorder, writer = await serve()
    # Parsed while the handler is not reading: the ping waits in aiohttp's queue, and the
    # text frames behind it must wait there too, sink or not.
    writer.write(client_frame(PING, b"p") + client_frame(TEXT, b"a") + client_frame(TEXT, b"b"))
    await until(lambda: recorder.buffered() == 3)
    recorder.gate.set()
    await until(lambda: len(recorder.seen) == 3)
    writer.write(client_frame(TEXT, b"c"))  # nothing queued any more: straight through
    await until(lambda: len(recorder.seen) == 4)
    assert recorder.seen == [
        ("receive", WSMsgType.PING, b"p"),
        ("receive", WSMsgType.TEXT, b"a"),
        ("receive", WSMsgType.TEXT, b"b"),
        ("sink", b"c", True),
    ]


async def test_frames_sent_with_the_upgrade_request_are_not_lost(serve: Any) -> None:
    recorder, writer = await serve(pipelined=client_frame(TEXT, b"early"))
    recorder.gate.set()
    await until(lambda: len(recorder.seen) == 1)
    writer.write(client_frame(TEXT, b"late"))
    await until(lambda: len(recorder.seen) == 2)
    assert recorder.seen == [("receive", WSMsgType.TEXT, b"early"), ("sink", b"late", True)]


async def test_frames_behind_a_close_frame_never_reach_the_game(serve: Any) -> None:
    recorder, writer = await serve()
    recorder.gate.set()
    writer.write(
        client_frame(TEXT, b"before")
        + client_frame(CLOSE, (1000).to_bytes(2, "big"))
        + client_frame(TEXT, b"after")
    )
    await asyncio.wait_for(recorder.done.wait(), 5)
    await asyncio.sleep(0.05)
    assert recorder.seen == [("sink", b"before", True)]


async def test_without_the_direct_path_every_frame_takes_receive(serve: Any) -> None:
    recorder, writer = await serve(use_direct=False)
    recorder.gate.set()
    writer.write(client_frame(TEXT, b"one") + client_frame(TEXT, b"two"))
    await until(lambda: len(recorder.seen) == 2)
    assert recorder.ws is not None
    assert not recorder.ws.direct
    assert recorder.seen == [
        ("receive", WSMsgType.TEXT, b"one"),
        ("receive", WSMsgType.TEXT, b"two"),
    ]


async def test_an_unchecked_aiohttp_release_gets_plain_aiohttp(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "SUPPORTED", False)
    recorder, writer = await serve()
    recorder.gate.set()
    writer.write(client_frame(TEXT, b"one"))
    await until(lambda: len(recorder.seen) == 1)
    assert recorder.ws is not None
    assert not recorder.ws.direct
    assert recorder.seen == [("receive", WSMsgType.TEXT, b"one")]


async def test_once_a_close_frame_was_read_no_text_goes_to_the_sink() -> None:
    # The handler may read the close before the transport is gone (it answers the close
    # first); a text frame parsed in that window must not reach the game.
    sunk: list[bytes] = []
    protocol = SimpleNamespace(_reading_paused=False)  # the little of it a queue reads
    queue = fastpath._DirectQueue(protocol, 2**16, loop=asyncio.get_running_loop())
    queue.sink = sunk.append
    queue.feed_data(WSMessage(WSMsgType.CLOSE, 1000, ""), 0)
    assert (await queue.read()).type is WSMsgType.CLOSE
    queue.feed_data(WSMessage(WSMsgType.TEXT, b"late", ""), 4)
    assert sunk == []
    assert (await queue.read()).data == b"late"


@pytest.mark.parametrize(
    ("supported", "wanted", "warned"),
    [(False, True, True), (True, True, False), (False, False, False)],
    ids=["unchecked-release", "checked-release", "turned-off"],
)
async def test_the_server_says_when_frames_cannot_take_the_direct_path(
    aiohttp_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    supported: bool,
    wanted: bool,
    warned: bool,
) -> None:
    monkeypatch.setattr(fastpath, "SUPPORTED", supported)
    with structlog.testing.capture_logs() as events:
        monkeypatch.setattr(app_module, "log", structlog.get_logger("game_server"))
        await aiohttp_server(create_app(ServerConfig(fast_path=wanted)), host="127.0.0.1")
    found = [e for e in events if e["event"] == "aiohttp_fast_path_unavailable"]
    assert [e["log_level"] for e in found] == (["warning"] if warned else [])
    if warned:
        assert found[0]["aiohttp"] == aiohttp.__version__
