"""One WebSocket as an ``Outlet``: a bounded send queue drained by a single writer task.

The game core never awaits a socket. ``send`` encodes and enqueues in O(1); the writer
task is the only coroutine that writes, so frames never interleave. A client that stops
reading fills its queue and is dropped, which bounds memory per connection and keeps a
slow phone from stalling anyone else's match.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import structlog
from aiohttp import WSMsgType, web

from protocol import ServerMessage, encode

log = structlog.get_logger("game_server.connection")

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.BaseRequest,
        *,
        queue_limit: int = 256,
        close_timeout: float = 2.0,
    ) -> None:
        self.ws = ws
        self.request = request
        self.queue_limit = queue_limit
        self.close_timeout = close_timeout
        self.dropped = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._ready = asyncio.Event()
        self._close_request: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ Outlet

    def send(self, message: ServerMessage) -> None:
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        """Enqueue a frame encoded once elsewhere (a broadcast); drop the client if full."""
        if self._close_request is not None:
            return
        if len(self._queue) >= self.queue_limit:
            self._drop()
            return
        self._queue.append(data)
        self._ready.set()

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (bounded by ``close_timeout``)."""
        if self._close_request is None:
            self._close_request = (code, reason)
            self._ready.set()

    def _drop(self) -> None:
        # The peer is not reading, so a close handshake would only wait on it: cut the TCP
        # connection. The writer, possibly stuck in drain(), fails at once and the reader
        # loop ends, which tells the game service the player left.
        log.warning("slow_consumer_dropped", queued=len(self._queue))
        self.dropped = True
        self._queue.clear()
        self._close_request = (CLOSE_TRY_AGAIN_LATER, "slow consumer")
        self._ready.set()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())

    async def finish(self) -> None:
        """The reader is done: stop the writer and make sure the socket is closed."""
        self.close(CLOSE_GOING_AWAY, "")
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def _write_loop(self) -> None:
        ws = self.ws
        queue = self._queue
        try:
            while True:
                while queue:
                    await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
                if self._close_request is not None:
                    break
                self._ready.clear()
                await self._ready.wait()
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; the reader sees the close and cleans up
        await self._close_socket()

    async def _close_socket(self) -> None:
        code, reason = self._close_request or (CLOSE_GOING_AWAY, "")
        if self.ws.closed:
            return
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except (TimeoutError, ConnectionError, RuntimeError):
            # close() waits for the peer; a peer that never reads never answers.
            transport = self.request.transport
            if transport is not None:
                transport.abort()
