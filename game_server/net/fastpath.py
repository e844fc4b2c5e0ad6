"""Every shortcut the server takes around aiohttp, in one place, under one version guard.

aiohttp's public WebSocket API costs a busy server dearly per frame, and an idle one per
socket, so on the aiohttp releases listed in ``CHECKED_RELEASES`` a socket takes these
shortcuts (together, the "fast path"):

- **Detaching**: once the upgrade is answered, the socket leaves aiohttp. A
  ``DetachedSocket`` becomes the transport's protocol, aiohttp's request handler lets go
  of the transport, and the handler returns at once: the request, its headers, aiohttp's
  protocol object, two tasks and a chain of nine coroutines no longer live as long as the
  socket (about 12 KiB of an idle player's 21; docs/performance.md). Nothing of a
  detached socket waits on the loop while it is idle: no task, no future, no timer.
- **Reading**: aiohttp's frame parser (its C ``WebSocketReader``) feeds the socket
  directly, in the call that read the bytes: a text frame goes to the game there and
  then, with no queue, future or task wake-up per frame (about 20 % more matches a
  second than aiohttp's ``receive()``). Control frames are answered in the same call.
- **Writing**: ``text_frames`` builds RFC 6455 server frames, and a connection writes a
  turn's frames to the transport in one call (``send_frame`` is a coroutine per frame);
  pongs and close frames are written the same way.
- **Pinging**: ``PING_FRAME`` is written the same way by the keep-alive sweep.
- **Masks**: every socket's parser sits behind ``MaskedFramesOnly``, which closes a
  socket that sends an unmasked frame with 1002, as RFC 6455 requires (aiohttp's parser
  does not check).

Detaching leans on aiohttp internals (what ``_post_start`` builds, the parser's queue
class, how the request handler ends once its handler returns); the writer relies on
nobody else writing to the transport. So all of it is used only where ``SUPPORTED``; on
any other release (or with ``ServerConfig(fast_path=False)``) a socket is plain aiohttp
(``receive()``, ``send_frame()``, ``ping()``), ``direct`` says so, and the server logs
``aiohttp_fast_path_unavailable`` at start-up.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, streams, web
from aiohttp.helpers import set_exception
from aiohttp.http_websocket import WebSocketError

# Releases whose parser calls ``queue.feed_data(message, size)`` with the message tuple
# first (and ``set_exception`` on a protocol error), whose ``_post_start`` builds the
# queue and parser as mirrored below, whose request handler ends without touching a
# transport it no longer has, and whose writer writes each frame whole.
CHECKED_RELEASES = ("3.14.",)

PING_FRAME = b"\x89\x00"  # FIN + ping, no payload, unmasked (server to client)

_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented RFC 6455 text frame, as a server sends it."""
    size = len(payload)
    if size < 126:
        return _LEN1(0x81, size) + payload
    if size < 65536:
        return _LEN2(0x81, 126, size) + payload
    return _LEN3(0x81, 127, size) + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A server's close frame (``reason`` at most 123 bytes)."""
    return _server_frame(0x88, code.to_bytes(2, "big") + reason)


def text_frames(payloads: Iterable[bytes]) -> bytes:
    """Several text frames as one write."""
    return b"".join(map(text_frame, payloads))


# The queue's high-water mark, as aiohttp sets it.
_QUEUE_LIMIT: int = getattr(streams, "DEFAULT_CHUNK_SIZE", 2**16)


class MaskedFramesOnly:
    """Stands between the connection and aiohttp's frame parser, which takes unmasked
    frames from clients although RFC 6455 (5.1) says a server must close the connection
    then, with 1002. It follows the frame headers through the byte stream (a few
    operations per frame); at the first unmasked frame it hands the parser only the
    bytes before it, then fails the socket's queue with a protocol error, so
    ``receive()`` closes with 1002."""

    __slots__ = ("_failed", "_head", "_on_unmasked", "_parser", "_queue", "_skip")

    def __init__(self, parser: Any, queue: Any, on_unmasked: Callable[[], None] | None) -> None:
        self._parser = parser
        self._queue = queue
        self._on_unmasked = on_unmasked
        self._skip = 0  # payload bytes of the current frame still to come
        self._head = b""  # a frame header cut off at the end of the last read
        self._failed = False

    def feed_eof(self) -> None:
        self._parser.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        unmasked = self._find_unmasked(data)
        if unmasked < 0:
            result: tuple[bool, bytes] = self._parser.feed_data(data)
            return result
        if unmasked:
            self._parser.feed_data(data[:unmasked])
        self._failed = True
        if self._on_unmasked is not None:
            self._on_unmasked()
        set_exception(
            self._queue,
            WebSocketError(WSCloseCode.PROTOCOL_ERROR, "client frames must be masked"),
        )
        return True, b""

    def _find_unmasked(self, data: bytes) -> int:
        """Where the first unmasked frame starts in ``data`` (0 if its header began in an
        earlier read), or -1."""
        head = self._head
        buffer = head + data if head else data
        offset = len(head)
        size = len(buffer)
        pos, skip = 0, self._skip
        while pos < size:
            if skip:
                step = min(skip, size - pos)
                pos += step
                skip -= step
                continue
            if size - pos < 2:
                break
            second = buffer[pos + 1]
            if not second & 0x80:
                return max(pos - offset, 0)
            length = second & 0x7F
            header = 6 if length < 126 else (8 if length == 126 else 14)
            if size - pos < header:
                break
            if length == 126:
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            pos += header
            skip = length
        self._skip = skip
        self._head = bytes(buffer[pos:]) if pos < size else b""
        return -1


try:
    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
except ImportError:  # pragma: no cover - moved in a release that is not checked anyway
    SUPPORTED = False
    _FrameTarget: Any = object
else:
    SUPPORTED = aiohttp.__version__.startswith(CHECKED_RELEASES)
    _FrameTarget = WebSocketDataQueue


class SocketEvents(Protocol):
    """What a detached socket tells its owner (``net/websocket.py``), from the read
    callback: frames in the order they came, then, once, the end."""

    def text(self, data: bytes) -> None: ...

    def control(self, kind: WSMsgType, data: bytes) -> None:
        """A ping, a pong or a binary frame."""

    def flush(self) -> None:
        """Write what the game queued for the socket now: a close frame follows."""

    def failed(self, error: BaseException) -> None:
        """The client broke the protocol; the socket was closed with its code."""

    def ended(self) -> None:
        """The socket is closed or gone; nothing more comes."""


_LOST = object()  # in ``_early``: the connection went before the owner started


class _Frames(_FrameTarget):  # type: ignore[misc]
    """What aiohttp's frame parser feeds (a ``WebSocketDataQueue`` to it): here every
    frame goes to the socket at once, so nothing is ever queued, and aiohttp's queue
    state (a deque, a loop, a waiter) is never made: ``__init__`` does not call the
    parent's. The parser reads ``_size`` against ``_limit`` to decide whether to stall;
    both stay 0 here, so it never does."""

    __slots__ = ("_socket",)

    def __init__(self, socket: DetachedSocket) -> None:
        self._socket = socket
        if not hasattr(self, "_size"):  # the pure-Python parser (AIOHTTP_NO_EXTENSIONS)
            for name, value in (("_size", 0), ("_limit", 0), ("_stalled_reader", None)):
                setattr(self, name, value)

    def feed_data(self, data: Any, size: int) -> None:
        self._socket._frame(data)

    def feed_eof(self) -> None:
        self._socket.connection_lost(None)

    def set_exception(self, exc: BaseException, exc_cause: BaseException | None = None) -> None:
        self._socket._failed(exc)


class DetachedSocket(asyncio.Protocol):
    """A WebSocket after the upgrade, as its transport's protocol, without aiohttp.

    It answers the client's close, ping (through its owner's flood guard) and protocol
    errors as aiohttp's ``WebSocketResponse`` with ``autoping=False`` would, and closes
    the way ``WebSocketResponse.close()`` does while a handler waits in ``receive()``:
    the close frame, then the transport. ``close_code`` is what aiohttp would report.
    """

    __slots__ = (
        "_drained",
        "_early",
        "_ended",
        "_events",
        "_parser",
        "_paused",
        "close_code",
        "closed",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser: MaskedFramesOnly | None = None
        self._events: SocketEvents | None = None
        # What the parser read before ``start`` (frames sent behind the upgrade request).
        self._early: list[Any] | None = None
        self._paused = False  # the transport's write buffer is over its high-water mark
        self._drained: asyncio.Future[None] | None = None  # a close waiting for the peer
        self._ended = False
        self.close_code: int | None = None
        self.closed = False  # a close frame went out, or the connection is gone

    def start(self, events: SocketEvents) -> None:
        """Frames go to ``events`` from now on, those read before first, in order."""
        self._events = events
        early, self._early = self._early, None
        for item in early or ():
            if self._ended:
                break
            if item is _LOST:
                self.connection_lost(None)
            elif isinstance(item, BaseException):
                self._failed(item)
            else:
                self._frame(item)

    # ------------------------------------------------------------ the transport's calls

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is not None:
            parser.feed_data(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._events is None and not self._ended:
            (self._early or self._keep_early()).append(_LOST)
            return
        self.closed = True
        if self.close_code is None:
            self.close_code = WSCloseCode.ABNORMAL_CLOSURE
        self._wake_closer()
        self._end()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_closer()

    # ------------------------------------------------------------ the parser's calls

    def _frame(self, message: Any) -> None:
        if self._ended:
            return  # nothing after the close (or an error) is for the game
        events = self._events
        if events is None:
            (self._early or self._keep_early()).append(message)
            return
        kind = message[0]
        if kind is WSMsgType.TEXT:
            events.text(message[1])
        elif kind is WSMsgType.CLOSE:
            # As aiohttp: the client's code is the close code, the answer is 1000.
            self.close_code = message[1]
            events.flush()
            self._send_close(WSCloseCode.OK, b"")
            self._end()
        else:
            events.control(kind, message[1])

    def _failed(self, exc: BaseException) -> None:
        if self._ended:
            return
        events = self._events
        if events is None:
            (self._early or self._keep_early()).append(exc)
            return
        code = exc.code if isinstance(exc, WebSocketError) else WSCloseCode.OK
        events.flush()
        self._send_close(code, b"")
        self.close_code = WSCloseCode.ABNORMAL_CLOSURE  # as aiohttp reports it
        events.failed(exc)
        self._end()

    # ------------------------------------------------------------ the owner's calls

    def pong(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(_server_frame(0x8A, data))

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool:
        """Send a close frame and close the transport: the peer's answer is not awaited
        (aiohttp's ``close()`` does not either while a handler waits in ``receive()``),
        but a peer that does not read holds the close for as long as the caller's
        timeout allows; the caller then aborts."""
        if self.closed:
            return False
        self.closed = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(close_frame(code, message))
            if self._paused:
                self._drained = asyncio.get_running_loop().create_future()
                try:
                    await self._drained
                finally:
                    self._drained = None
            transport.close()
        if self.close_code is None:
            self.close_code = WSCloseCode.OK
        self._end()
        return True

    # ------------------------------------------------------------ inside

    def _keep_early(self) -> list[Any]:
        self._early = []
        return self._early

    def _send_close(self, code: int, message: bytes) -> None:
        if self.closed:
            return
        self.closed = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(close_frame(code, message))
            transport.close()

    def _wake_closer(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        # The parser holds the socket through its queue: let go, so the socket, its
        # connection and its session are freed when the transport lets go of it, not at
        # the next full garbage collection.
        self._parser = None
        events, self._events = self._events, None
        if events is not None:
            events.ended()


def _server_frame(first: int, payload: bytes) -> bytes:
    """An unmasked, unfragmented server frame whose first byte is ``first``."""
    size = len(payload)
    if size < 126:
        return _LEN1(first, size) + payload
    if size < 65536:
        return _LEN2(first, 126, size) + payload
    return _LEN3(first, 127, size) + payload


class DirectWebSocketResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose socket can leave aiohttp once it is prepared
    (``detach``).

    ``use_direct=False`` (or an unchecked aiohttp release) makes it a plain one.
    """

    def __init__(
        self,
        *,
        use_direct: bool = True,
        on_unmasked: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._use_direct = use_direct and SUPPORTED
        self._on_unmasked = on_unmasked
        self._socket: DetachedSocket | None = None
        # Set once detached: aiohttp's access log skips it (the socket logs its own line
        # when it closes, as aiohttp logs a WebSocket's).
        self.detached = False

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        if not SUPPORTED:
            super()._post_start(request, protocol, writer)
            return
        # aiohttp's own _post_start (3.14), with the parser behind MaskedFramesOnly and,
        # on the fast path, feeding a DetachedSocket instead of a queue. Bytes the client
        # sent behind its upgrade request are parsed here, before anyone reads: on the
        # fast path the socket keeps those frames for ``start``.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        assert self._loop is not None
        queue: Any
        if self._use_direct:
            socket = self._socket = DetachedSocket()
            queue = _Frames(socket)
        else:
            queue = WebSocketDataQueue(request._protocol, _QUEUE_LIMIT, loop=self._loop)
            self._reader = queue
        self._parser = WebSocketReader(
            queue, self._max_msg_size, compress=bool(self._compress), decode_text=self._decode_text
        )
        checked = MaskedFramesOnly(self._parser, queue, self._on_unmasked)
        if self._use_direct:
            socket._parser = checked
        callback = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(checked, data_received_cb=callback)  # type: ignore[arg-type]
        request.protocol.keep_alive(False)

    @property
    def direct(self) -> bool:
        """Whether this socket takes the fast path (``detach`` after ``prepare``)."""
        return self._use_direct

    def detach(self, request: web.BaseRequest) -> DetachedSocket:
        """Hand the transport to this socket's ``DetachedSocket``; the handler should
        return this response at once. aiohttp then ends its handler task without closing
        the transport, forgets the connection, and writes nothing more to it."""
        socket = self._socket
        assert socket is not None, "prepare() a direct response first"
        self._socket = None
        self._parser = None  # the socket holds it now
        self._eof_sent = True  # aiohttp's write_eof() after the handler: nothing to write
        self.detached = True
        protocol = request.protocol
        transport = protocol.transport
        if transport is None or transport.is_closing():
            socket.connection_lost(None)  # gone while the upgrade was answered
            return socket
        transport.set_protocol(socket)
        socket.transport = transport
        # aiohttp's handler must neither close the transport when its task ends nor keep
        # counting it as one of its connections (the manager drops it once that task ends).
        protocol.transport = None
        manager = protocol._manager
        if manager is not None:
            manager.connection_lost(protocol, None)
        # What aiohttp's connection_lost would let go of: its HTTP parser refers back to
        # it (a cycle only a full collection would free), and the frame parser is ours.
        protocol._parser = None
        protocol._payload_parser = None
        return socket
