"""A detached socket (net/fastpath.py) over real sockets on 127.0.0.1.

A raw client writes exact frame sequences in one go, so the tests decide what the
server has read when each frame is parsed.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.net import app as app_module
from game_server.net import fastpath
from game_server.net.fastpath import DetachedSocket, DirectWebSocketResponse
from tests.support.waiting import until

ServerFactory = Callable[..., Awaitable[TestServer]]
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked, unfragmented client frame (RFC 6455 5.2), payload under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in ``data`` (payloads under 126 bytes)."""
    frames = []
    while data:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        frames.append((opcode, data[2 : 2 + size]))
        data = data[2 + size :]
    return frames


class Recorder:
    """The server side: one socket, detached unless told not to, started once ``gate`` is
    set, and everything it was told, with whether a task was running."""

    def __init__(self, *, use_direct: bool = True) -> None:
        self.use_direct = use_direct
        self.gate = asyncio.Event()
        self.seen: list[tuple[Any, ...]] = []
        self.ws: DirectWebSocketResponse | None = None
        self.socket: DetachedSocket | None = None
        self.done = asyncio.Event()
        self.handler_returned = asyncio.Event()
        self.aiohttp_server: TestServer | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = DirectWebSocketResponse(
            use_direct=self.use_direct, autoping=False, decode_text=False, max_msg_size=64
        )
        self.ws = ws
        await ws.prepare(request)
        if ws.direct:
            self.socket = ws.detach(request)
            await self.gate.wait()
            self.socket.start(self)
        else:
            await self.gate.wait()
            async for message in ws:
                self.seen.append(("receive", message.type, message.data))
            self.done.set()
        self.handler_returned.set()
        return ws

    # SocketEvents
    def text(self, data: bytes) -> None:
        self.seen.append(("text", data, asyncio.current_task() is None))

    def control(self, kind: WSMsgType, data: bytes) -> None:
        self.seen.append(("control", kind, data))

    def flush(self) -> None:
        self.seen.append(("flush",))

    def failed(self, error: BaseException) -> None:
        self.seen.append(("failed", type(error).__name__))

    def ended(self) -> None:
        self.seen.append(("ended",))
        self.done.set()


Serve = Callable[..., Awaitable[tuple[Recorder, asyncio.StreamReader, asyncio.StreamWriter]]]


@pytest.fixture
async def serve(aiohttp_server: ServerFactory) -> AsyncIterator[Serve]:
    writers: list[asyncio.StreamWriter] = []

    async def start(
        pipelined: bytes = b"", **options: Any
    ) -> tuple[Recorder, asyncio.StreamReader, asyncio.StreamWriter]:
        recorder = Recorder(**options)
        app = web.Application()
        app.router.add_get("/ws", recorder.handler)
        server = recorder.aiohttp_server = await aiohttp_server(app, host="127.0.0.1")
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
        return recorder, reader, writer

    yield start
    for writer in writers:
        writer.close()


def test_this_aiohttp_release_is_one_the_direct_path_was_checked_on() -> None:
    # Fails after an aiohttp upgrade: read fastpath against the new release's
    # _post_start, WebSocketDataQueue, WebSocketReader and RequestHandler.start, then
    # add it to CHECKED_RELEASES.
    assert fastpath.SUPPORTED, aiohttp.__version__


async def test_frames_go_to_the_socket_in_the_read_callback_in_order(serve: Serve) -> None:
    recorder, _, writer = await serve()
    recorder.gate.set()
    writer.write(
        client_frame(TEXT, b"one")
        + client_frame(PING, b"p")
        + client_frame(TEXT, b"two")
        + client_frame(PONG, b"")
        + client_frame(BINARY, b"\x00")
    )
    await until(lambda: len(recorder.seen) == 5)
    assert recorder.ws is not None
    assert recorder.ws.direct
    assert recorder.seen == [
        ("text", b"one", True),
        ("control", WSMsgType.PING, b"p"),
        ("text", b"two", True),
        ("control", WSMsgType.PONG, b""),
        ("control", WSMsgType.BINARY, b"\x00"),
    ]


async def test_aiohttp_lets_go_of_a_detached_socket_but_not_of_its_transport(
    serve: Serve,
) -> None:
    recorder, reader, writer = await serve()
    recorder.gate.set()
    await asyncio.wait_for(recorder.handler_returned.wait(), 5)
    await asyncio.sleep(0.05)  # aiohttp's request task ends after the handler
    socket = recorder.socket
    assert socket is not None
    assert socket.transport is not None
    assert not socket.transport.is_closing()
    # aiohttp no longer counts it, and no task waits on it.
    assert recorder.aiohttp_server is not None
    assert recorder.aiohttp_server.runner is not None
    assert recorder.aiohttp_server.runner.server is not None
    assert recorder.aiohttp_server.runner.server.connections == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
    writer.write(client_frame(PING, b"still here"))
    await until(lambda: len(recorder.seen) == 1)
    socket.pong(b"back")
    assert server_frames(await reader.read(12)) == [(PONG, b"back")]


async def test_frames_sent_with_the_upgrade_request_come_first(serve: Serve) -> None:
    recorder, _, writer = await serve(pipelined=client_frame(TEXT, b"early"))
    writer.write(client_frame(TEXT, b"meanwhile"))  # read before the socket started too
    await asyncio.sleep(0.05)
    assert recorder.seen == []
    recorder.gate.set()
    await until(lambda: len(recorder.seen) == 2)
    writer.write(client_frame(TEXT, b"late"))
    await until(lambda: len(recorder.seen) == 3)
    assert [data for _, data, _ in recorder.seen] == [b"early", b"meanwhile", b"late"]


async def test_a_close_frame_is_answered_and_nothing_behind_it_reaches_the_game(
    serve: Serve,
) -> None:
    recorder, reader, writer = await serve()
    recorder.gate.set()
    writer.write(
        client_frame(TEXT, b"before")
        + client_frame(CLOSE, (4001).to_bytes(2, "big"))
        + client_frame(TEXT, b"after")
    )
    await asyncio.wait_for(recorder.done.wait(), 5)
    answer = await asyncio.wait_for(reader.read(), 5)  # up to the server's close
    await asyncio.sleep(0.05)
    assert recorder.seen == [("text", b"before", True), ("flush",), ("ended",)]
    assert server_frames(answer) == [(CLOSE, (1000).to_bytes(2, "big"))]
    assert recorder.socket is not None
    assert recorder.socket.close_code == 4001  # the client's, as aiohttp reports it


async def test_a_broken_frame_closes_with_its_code(serve: Serve) -> None:
    recorder, reader, writer = await serve()
    recorder.gate.set()
    writer.write(client_frame(TEXT, b"x" * 100))  # over max_msg_size
    answer = await asyncio.wait_for(reader.read(), 5)
    await asyncio.wait_for(recorder.done.wait(), 5)
    assert recorder.seen == [("flush",), ("failed", "WebSocketError"), ("ended",)]
    assert server_frames(answer)[-1][1][:2] == (1009).to_bytes(2, "big")
    assert recorder.socket is not None
    assert recorder.socket.close_code == 1006


async def test_closing_from_the_server_sends_the_code_and_closes_the_transport(
    serve: Serve,
) -> None:
    recorder, reader, _ = await serve()
    recorder.gate.set()
    await asyncio.wait_for(recorder.handler_returned.wait(), 5)
    socket = recorder.socket
    assert socket is not None
    assert await socket.close(code=4000, message=b"bye")
    assert not await socket.close(code=4000, message=b"again")  # once
    answer = await asyncio.wait_for(reader.read(), 5)
    assert server_frames(answer) == [(CLOSE, (4000).to_bytes(2, "big") + b"bye")]
    assert recorder.seen == [("ended",)]
    assert socket.close_code == 1000


async def test_a_lost_connection_ends_the_socket_once(serve: Serve) -> None:
    recorder, _, writer = await serve()
    recorder.gate.set()
    await asyncio.wait_for(recorder.handler_returned.wait(), 5)
    writer.transport.abort()
    await asyncio.wait_for(recorder.done.wait(), 5)
    await asyncio.sleep(0.05)
    assert recorder.seen == [("ended",)]
    assert recorder.socket is not None
    assert recorder.socket.close_code == 1006
    assert recorder.socket.closed


async def test_without_the_direct_path_every_frame_takes_receive(serve: Serve) -> None:
    recorder, _, writer = await serve(use_direct=False)
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
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastpath, "SUPPORTED", False)
    recorder, _, writer = await serve()
    recorder.gate.set()
    writer.write(client_frame(TEXT, b"one"))
    await until(lambda: len(recorder.seen) == 1)
    assert recorder.ws is not None
    assert not recorder.ws.direct
    assert recorder.seen == [("receive", WSMsgType.TEXT, b"one")]


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
