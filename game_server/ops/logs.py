"""structlog set-up: one JSON object per line for machines, colours for people."""

from __future__ import annotations

import atexit
import errno
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any, Literal, TextIO

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from game_server.core.ratelimit import TokenBucket

LogFormat = Literal["auto", "json", "console"]
REQUEST_ID = web.RequestKey("request_id", str)
# The client's address: the peer's, or what a trusted proxy said (net/addresses.py).
CLIENT_ADDRESS = web.RequestKey("client_address", str)


# Lines waiting for the log thread beyond which new ones are dropped (and counted): a few
# MiB, some seconds of a busy server's lines. Normally a handful wait.
LOG_QUEUE_MAX = 10_000
LOG_GATHER_SECONDS = 0.02  # the thread lets lines gather this long, then writes them at once
LOG_CLOSE_SECONDS = 2.0  # at exit, for the last lines; a reader that stalls loses them


class LogSink:
    """Where log lines go: stderr, written by a thread of their own, and never raising.

    Whoever logs only queues the line, so neither a reader that stalls (a pipe to pm2 or
    journald fills up) nor one that is gone can hold up a match or a signal handler. The
    thread writes whole lines, a batch per write, in order. A pipe nobody reads any more
    is pointed at /dev/null, as the Python docs advise for SIGPIPE, so nothing else writing
    to it fails either (the interpreter's own flush at exit included). Lost lines are
    counted in ``lines_lost``: those a failed write took, those after the pipe broke, and
    those beyond ``limit`` waiting. A full disk loses its batch and the next one is tried.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        limit: int = LOG_QUEUE_MAX,
        gather: float = LOG_GATHER_SECONDS,
    ) -> None:
        self.fd = stream.fileno()
        self.encoding = stream.encoding or "utf-8"
        self.limit = limit
        self.gather = gather
        self.lines_lost = 0
        self.broken = False  # the reader is gone for good
        self._lines: deque[bytes] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._count_lock = threading.Lock()  # lines are lost on several threads
        self._write_lock = threading.Lock()  # one batch at a time keeps the lines in order
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, line: str | bytes) -> int:
        """Queue one whole line (structlog and the stdlib write a line per call)."""
        if self.broken or self._stop.is_set() or len(self._lines) >= self.limit:
            self._lost(1)
        else:
            self._lines.append(
                line if isinstance(line, bytes) else line.encode(self.encoding, "backslashreplace")
            )
            if not self._wake.is_set():
                self._wake.set()
        return len(line)

    def flush(self) -> None:
        """The loggers call this after every line; the thread writes them (``drain`` now)."""

    def drain(self) -> None:
        """Write every queued line now, on this thread."""
        with self._write_lock:
            lines = self._lines
            batch = [lines.popleft() for _ in range(len(lines))]
            if batch:
                self._write(b"".join(batch), len(batch))

    def close(self, timeout: float = LOG_CLOSE_SECONDS) -> None:
        """Write what is queued and stop the thread, waiting at most ``timeout``."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._stop.wait(self.gather)  # let a batch gather, unless it is time to go
            self._wake.clear()  # lines queued from here on wake the thread again
            self.drain()
        self.drain()  # what was queued when close() came

    def _write(self, data: bytes, lines: int) -> None:
        if self.broken:
            self._lost(lines)
            return
        try:
            view = memoryview(data)
            while view:  # a signal can cut a write to a pipe short
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self._lost(lines)
            if exc.errno == errno.EPIPE:
                self._discard()

    def _lost(self, lines: int) -> None:
        with self._count_lock:
            self.lines_lost += lines

    def _discard(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.fd)
            finally:
                os.close(devnull)
        except OSError:
            pass  # the lines are dropped all the same


# Lines each connection writes (~4 per connection, ~1 KB): a handshake flood made them a
# disk filler. At info level they are sampled: up to ``rate`` a second (bursts of
# ``burst``) are written, the rest only counted, by event, in rps_log_lines_sampled_out.
# Matches, warnings and errors are always written; at debug level so is everything.
CONNECTION_EVENTS = frozenset(
    {
        "http",  # the access log: one per request, one per WebSocket
        "connected",
        "hello",
        "disconnected",
        "player_disconnected",
        "session_closed",
        "connection_cut",
        "reconnect_grace_over",
        "socket_error",
        "login",
        "login_refused",
    }
)
CONNECTION_LINES_RATE = 50.0
CONNECTION_LINES_BURST = 500.0


class ConnectionLineSampler:
    """A structlog processor (first in the chain, so a dropped line costs little) that
    writes per-connection info lines up to a rate and counts the rest."""

    def __init__(
        self,
        rate: float = CONNECTION_LINES_RATE,
        burst: float = CONNECTION_LINES_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = TokenBucket(rate, burst)
        self._clock = clock
        self._lock = threading.Lock()  # aiohttp's access log and the loop share it
        self.dropped: dict[str, int] = {}

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event = event_dict.get("event")
        if method_name in ("info", "debug") and event in CONNECTION_EVENTS:
            with self._lock:
                if not self._bucket.take(self._clock()):
                    self.dropped[event] = self.dropped.get(event, 0) + 1
                    raise structlog.DropEvent
        return event_dict


_sink: LogSink | None = None
_sampler: ConnectionLineSampler | None = None


def log_lines_sampled() -> dict[str, int]:
    """Per-connection lines not written (sampled out under load), by event."""
    return {} if _sampler is None else dict(_sampler.dropped)


def log_lines_lost() -> int:
    """Log lines this process could not write since logging was configured."""
    return 0 if _sink is None else _sink.lines_lost


def close_logging() -> None:
    """Write the last log lines and stop the log thread; configure_logging runs this at
    exit."""
    if _sink is not None:
        _sink.close()


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """``auto`` means JSON unless stderr is a terminal."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    global _sink
    if _sink is None:
        atexit.register(close_logging)
    else:
        _sink.close()
    _sink = sink = LogSink(sys.stderr)
    global _sampler
    sampling: list[structlog.typing.Processor] = []
    if level.lower() != "debug":
        _sampler = ConnectionLineSampler()
        sampling.append(_sampler)
    shared: list[structlog.typing.Processor] = [
        *sampling,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor
    logger_factory: structlog.BytesLoggerFactory | structlog.WriteLoggerFactory
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        logger_factory = structlog.BytesLoggerFactory(sink)  # type: ignore[arg-type]
    else:
        renderer = structlog.dev.ConsoleRenderer()
        logger_factory = structlog.WriteLoggerFactory(sink)  # type: ignore[arg-type]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    # aiohttp and asyncio report through the standard library; keep their warnings visible.
    logging.basicConfig(level=logging.WARNING, stream=sink, format="%(name)s: %(message)s")


class AccessLogger(AbstractAccessLogger):
    """aiohttp access log lines as structlog events (one JSON object per request).

    WebSocket requests are logged when the socket closes, so ``duration_ms`` is the
    connection's lifetime. ``remote`` is the client's address: the peer's, or what a
    trusted proxy said it is (``--trusted-proxies``); the ``X-Forwarded-For`` header is
    kept as it came beside it.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if getattr(response, "detached", False):
            return  # a WebSocket that left aiohttp: it logs its own line when it closes
        access_line(
            request.method,
            request.path,
            response.status,
            time,
            remote=request.get(CLIENT_ADDRESS) or request.remote,
            request_id=request.headers.get("X-Request-Id") or request.get(REQUEST_ID),
            forwarded_for=request.headers.get("X-Forwarded-For"),
            user_agent=request.headers.get("User-Agent"),
        )


_access_log = structlog.get_logger("game_server.access")


def access_line(
    method: str,
    path: str,
    status: int,
    seconds: float,
    *,
    remote: str | None,
    request_id: str | None,
    forwarded_for: str | None,
    user_agent: str | None,
) -> None:
    """One request's access line (an ``http`` event), from aiohttp or a detached socket."""
    _access_log.info(
        "http",
        method=method,
        path=path,
        status=status,
        duration_ms=round(seconds * 1000, 2),
        remote=remote,
        request_id=request_id,
        forwarded_for=forwarded_for,
        user_agent=user_agent,
    )
