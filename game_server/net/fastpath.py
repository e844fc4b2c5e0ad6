"""Every shortcut the server takes around aiohttp, in one place, under one version guard.

aiohttp's public WebSocket API costs a busy server dearly per frame, so on the aiohttp
releases listed in ``CHECKED_RELEASES`` a socket takes three shortcuts (together, the
"fast path"):

- **Reading**: aiohttp puts every parsed frame on a queue and wakes the handler task to
  read it: a future, a loop callback, a task step and three coroutine resumes per frame,
  about as much loop time as the game spends on a ``choice``. A
  ``DirectWebSocketResponse`` hands a text frame to its sink instead, in the call that
  parsed it (about 20 % more matches a second; docs/performance.md). Everything else
  (close, ping, pong, binary, errors, end of stream) and every frame behind one of those
  still queued takes aiohttp's own path to ``receive()``, so the handler still sees the
  socket's whole life and frames are handled in the order they came.
- **Writing**: ``text_frames`` builds RFC 6455 server frames, and a connection writes a
  turn's frames to the transport in one call (``send_frame`` is a coroutine per frame).
- **Pinging**: ``PING_FRAME`` is written the same way by the keep-alive sweep.
- **Masks**: every socket's parser sits behind ``MaskedFramesOnly``, which closes a
  socket that sends an unmasked frame with 1002, as RFC 6455 requires (aiohttp's parser
  does not check).

The reader leans on aiohttp internals (the queue class the parser feeds,
``_post_start``); the writer and the ping rely on aiohttp writing only whole frames of its
own, uncompressed (``compress=False``), between ours. So all three are used only where
``SUPPORTED``; on any other release a socket is plain aiohttp (``receive()``,
``send_frame()``, ``ping()``), ``direct`` says so, and the server logs
``aiohttp_fast_path_unavailable`` at start-up.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, streams, web
from aiohttp.helpers import set_exception
from aiohttp.http_websocket import WebSocketError

TextSink = Callable[[bytes], None]

# Releases whose parser calls ``queue.feed_data(message, size)`` with the message tuple
# first, whose ``_post_start`` builds the queue and parser as mirrored below, and whose
# writer writes each frame whole to the transport.
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
else:
    SUPPORTED = aiohttp.__version__.startswith(CHECKED_RELEASES)

    class _DirectQueue(WebSocketDataQueue):
        """aiohttp's frame queue, except that text frames with none queued ahead of them
        go to ``sink`` at once."""

        sink: TextSink | None = None

        def feed_data(self, data: Any, size: int) -> None:
            sink = self.sink
            if sink is not None and not self._buffer:
                kind = data[0]
                if kind is WSMsgType.TEXT:
                    sink(data[1])
                    return
                if kind is WSMsgType.CLOSE:
                    self.sink = None  # nothing after a close frame is for the game
            super().feed_data(data, size)


class DirectWebSocketResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose text frames can go to a sink instead of ``receive()``.

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
        self._direct_queue: Any = None

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        if not SUPPORTED:
            super()._post_start(request, protocol, writer)
            return
        # aiohttp's own _post_start (3.14), with the queue class swapped on the fast path
        # and the parser behind MaskedFramesOnly. Bytes the client sent behind its upgrade
        # request are parsed here, before any sink is set, so they queue for ``receive()``
        # and the frames after them queue behind them.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        assert self._loop is not None
        queue_class = _DirectQueue if self._use_direct else WebSocketDataQueue
        queue = queue_class(request._protocol, _QUEUE_LIMIT, loop=self._loop)
        self._reader = queue
        self._parser = WebSocketReader(
            queue, self._max_msg_size, compress=bool(self._compress), decode_text=self._decode_text
        )
        callback = None if self._heartbeat is None else self._on_data_received
        checked = MaskedFramesOnly(self._parser, queue, self._on_unmasked)
        request.protocol.set_parser(checked, data_received_cb=callback)  # type: ignore[arg-type]
        request.protocol.keep_alive(False)
        if self._use_direct:
            self._direct_queue = queue

    @property
    def direct(self) -> bool:
        """Whether this socket takes the fast path: frames read in the parser's callback,
        written and pinged as raw frames."""
        return self._direct_queue is not None

    def set_sink(self, sink: TextSink | None) -> None:
        """Hand text frames to ``sink`` from now on; ``None``: back to ``receive()``."""
        if self._direct_queue is not None:
            self._direct_queue.sink = sink
