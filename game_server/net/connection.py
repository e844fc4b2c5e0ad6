"""One WebSocket as an ``Outlet``: a bounded send queue with a single writer.

The game core never awaits a socket. ``send`` encodes and enqueues in O(1). Frames queued
during one turn of the event loop are flushed together at the end of it, as one write to
the transport (one syscall instead of one per frame: a player usually gets ``result`` and
the next ``start``, or ``queued`` and ``start``, in the same turn). When the peer reads
too slowly for the transport to keep up, flushing stops and the writer task waits for the
buffer to drain; if the queue then reaches its limit the client is dropped. The writer
task starts on the first backpressure or close, so an idle player costs no task. That bounds
memory per connection and keeps a slow phone from stalling anyone else's match.

Only this class writes game frames to the socket, so frames never interleave; the
socket itself only writes whole control frames (pong, ping, close) between them. That is
how a socket on the fast path (a ``DetachedSocket``, ``net/fastpath.py``) writes; on any
other the writer task sends each frame with aiohttp's own ``send_frame``, which waits out
backpressure by itself.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import WSMsgType, web

from game_server.core.ports import NullObserver, Observer
from game_server.net.fastpath import PING_FRAME, DetachedSocket, text_frame, text_frames
from protocol import CloseCode, ServerMessage, encode

log = structlog.get_logger("game_server.net.connection")

# Stop flushing while this much is still unsent in the transport; resume below it.
WRITE_HIGH_WATER = 64 * 1024
# A turn that queues this many frames for one socket flushes them at once, so a burst
# of requests read without suspending never looks like a client that does not read.
FLUSH_AT = 32
DRAIN_POLL_SECONDS = 0.02


class Flusher:
    """Flushes every connection that queued frames during a turn, from one loop callback
    (not one per connection: a busy turn queues frames for hundreds of sockets)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Connection] = []

    def add(self, connection: Connection) -> None:
        if not self._dirty:
            self._loop.call_soon(self._run)
        self._dirty.append(connection)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection._flush()


class Connection:
    # Slots: one per connected player, so every byte counts (idle players are most of them).
    __slots__ = (
        "_backlogged",
        "_caught_up",
        "_close_request",
        "_fast",
        "_flush_scheduled",
        "_flusher",
        "_ping_due",
        "_queue",
        "_transport",
        "_wake",
        "_writer",
        "address",
        "close_timeout",
        "dropped",
        "heard",
        "observer",
        "queue_limit",
        "quiet_sweeps",
        "ws",
    )

    def __init__(
        self,
        ws: DetachedSocket | web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        *,
        queue_limit: int = 256,
        close_timeout: float = 2.0,
        observer: Observer | None = None,
        flusher: Flusher | None = None,
        address: str | None = None,
    ) -> None:
        self.ws = ws
        self.address = address  # the client's (net/addresses.py), for per-address limits
        self.queue_limit = queue_limit
        self.close_timeout = close_timeout
        self.dropped = False
        self.observer: Observer = observer or NullObserver()
        # A list, not a deque: an empty deque is 760 bytes (a block of 64 slots), an empty
        # list 56, and an idle player's queue is empty nearly all the time.
        self._queue: list[bytes] = []
        # The socket's transport (a lost connection's reports is_closing()).
        self._transport: asyncio.Transport | None = transport  # type: ignore[assignment]
        self._flusher = flusher or Flusher(asyncio.get_running_loop())
        self._flush_scheduled = False
        self._backlogged = False
        self._wake: asyncio.Event | None = None  # made with the writer task, if ever
        self._close_request: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Raw frames to the transport, or aiohttp's public API (see net/fastpath.py).
        self._fast = isinstance(ws, DetachedSocket)
        self._ping_due = False  # off the fast path: a ping for the writer task to send
        # Off the fast path, while a reader waits for the writer to send everything.
        self._caught_up: asyncio.Event | None = None
        # Keep-alive bookkeeping for game_server/heartbeat.py.
        self.heard = True
        self.quiet_sweeps = 0

    # ------------------------------------------------------------ Outlet

    def send(self, message: ServerMessage) -> None:
        self.observer.message_out(message.TYPE)
        self.send_encoded(encode(message))

    def send_encoded(self, data: bytes) -> None:
        """Enqueue a frame encoded once elsewhere (a broadcast); drop the client if full."""
        if self._close_request is not None:
            return
        if len(self._queue) >= self.queue_limit:
            self._drop()
            return
        queue = self._queue
        queue.append(data)
        if not self._fast:
            self._wake_writer()
            return
        if self._backlogged:
            return
        if len(queue) >= FLUSH_AT:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._flusher.add(self)

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (bounded by ``close_timeout``)."""
        if self._close_request is None:
            self._close_request = (code, reason)
            self._wake_writer()

    def ping(self) -> None:
        """Send a WebSocket ping now, unless the peer is not reading anyway."""
        if not self._fast:
            self._ping_due = True
            self._wake_writer()
            return
        transport = self._transport
        if transport is not None and not transport.is_closing() and not self._backlogged:
            transport.write(PING_FRAME)

    @property
    def detached(self) -> bool:
        """On the fast path: the socket left aiohttp (its connections do not count it)."""
        return self._fast

    @property
    def transport(self) -> asyncio.Transport | None:
        """The socket's transport (for tests and tools: the game never touches it)."""
        return self._transport

    @property
    def behind(self) -> bool:
        """Off the fast path, after a burst: the reader should ``catch_up`` before it reads
        on (on the fast path a burst is written at once: ``FLUSH_AT``)."""
        return not self._fast and len(self._queue) >= FLUSH_AT

    async def catch_up(self) -> None:
        """Wait until the writer has sent what is queued, so a client's own burst of
        requests never fills its queue; a client that does not read meanwhile (for
        ``close_timeout``) is dropped."""
        if not self._queue or self.dropped:
            return
        self._caught_up = caught_up = asyncio.Event()
        try:
            async with asyncio.timeout(self.close_timeout):
                await caught_up.wait()
        except TimeoutError:
            if self._queue:
                self._drop()
        finally:
            self._caught_up = None

    def cut(self, reason: str) -> None:
        """The peer is gone without a word (no pong): drop the TCP connection."""
        log.info("connection_cut", reason=reason)
        self._abort()

    def _abort(self) -> None:
        """Drop the TCP connection without a close handshake (a no-op once it is gone)."""
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------ writing

    def flush(self) -> None:
        """Write what is queued now, not at the end of the turn (before a close frame)."""
        if self._fast:
            self._flush()

    def _flush(self) -> None:
        # Also called directly at FLUSH_AT: a flush already scheduled then finds less, or
        # nothing, to write.
        self._flush_scheduled = False
        queue = self._queue
        transport = self._transport
        if not queue or self._backlogged:
            return
        if transport is None or transport.is_closing():
            queue.clear()
            return
        if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            self._backlogged = True  # the writer task takes over until it drains
            self._wake_writer()
            return
        if len(queue) == 1:
            transport.write(text_frame(queue[0]))
        else:
            transport.write(text_frames(queue))
        queue.clear()

    def _drop(self) -> None:
        # The peer is not reading, so a close handshake would only wait on it: cut the TCP
        # connection. The reader loop then ends, which tells the game service the player
        # left.
        log.warning("slow_consumer_dropped", queued=len(self._queue))
        self.observer.dropped()
        self.dropped = True
        self._queue.clear()
        self._close_request = (CloseCode.TRY_AGAIN_LATER, "slow consumer")
        self._wake_writer()
        self._abort()

    # ------------------------------------------------------------ lifecycle

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is None:
            wake = self._wake = asyncio.Event()
            self._writer = asyncio.create_task(self._write_loop(wake))
        wake.set()

    async def finish(self) -> None:
        """The reader is done: stop the writer and make sure the socket is closed."""
        self.close(CloseCode.GOING_AWAY, "")
        if self._writer is not None:
            await self._writer

    async def _write_loop(self, wake: asyncio.Event) -> None:
        """Waits out backpressure, and closes the socket once asked to (after a flush).

        Off the fast path it also sends every frame, one ``send_frame`` at a time."""
        if not self._fast:
            await self._send_loop(wake)
            return
        while True:
            await wake.wait()
            wake.clear()
            while self._backlogged and self._close_request is None:
                transport = self._transport
                if transport is None or transport.is_closing():
                    break
                if transport.get_write_buffer_size() <= WRITE_HIGH_WATER // 2:
                    self._backlogged = False
                    self._flush()
                else:
                    await asyncio.sleep(DRAIN_POLL_SECONDS)
            if self._close_request is not None:
                break
        self._backlogged = False
        self._flush()
        await self._close_socket()

    async def _send_loop(self, wake: asyncio.Event) -> None:
        """The writer off the fast path: aiohttp's public API, frame by frame."""
        while True:
            await wake.wait()
            wake.clear()
            await self._send_queued()
            if self._close_request is not None:
                break
        await self._send_queued()
        await self._close_socket()

    async def _send_queued(self) -> None:
        ws, queue = self.ws, self._queue
        assert isinstance(ws, web.WebSocketResponse), "only off the fast path"
        try:
            if self._ping_due:
                self._ping_due = False
                await ws.ping()
            while queue and not self.dropped:
                await ws.send_frame(queue.pop(0), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):  # the socket is closing or gone
            queue.clear()
        if self._caught_up is not None:
            self._caught_up.set()

    async def _close_socket(self) -> None:
        code, reason = self._close_request or (CloseCode.GOING_AWAY, "")
        if self.ws.closed:
            return
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except (TimeoutError, ConnectionError, RuntimeError):
            # close() waits for the peer; a peer that never reads never answers.
            self._abort()
