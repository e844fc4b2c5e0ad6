"""structlog set-up: one JSON object per line for machines, colours for people."""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
from typing import Literal, TextIO

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

LogFormat = Literal["auto", "json", "console"]
REQUEST_ID = web.RequestKey("request_id", str)


class LogSink:
    """Where log lines go: stderr, one whole line per write, and never raising.

    A log line that cannot be written must not stop what logged it: a signal handler, a
    match, a storage batch. Pipes break (journald restarted, ``| head`` exited) and disks
    fill. A pipe nobody reads any more is pointed at /dev/null, as the Python docs advise
    for SIGPIPE, so nothing else writing to it fails either (the interpreter's own flush at
    exit included); every line after that, like every line a failed write took, counts in
    ``lines_lost``. Other failures (a full disk) lose their line and try the next one.

    Lines go to the file descriptor with ``os.write``, past Python's buffers: every line
    was flushed at once anyway, and a buffer would keep a failed line to fail again.
    """

    def __init__(self, stream: TextIO) -> None:
        self.fd = stream.fileno()
        self.encoding = stream.encoding or "utf-8"
        self.lines_lost = 0
        self.broken = False  # the reader is gone for good
        self._lock = threading.Lock()  # one for structlog's lines and the stdlib's

    def write(self, line: str | bytes) -> int:
        data = line if isinstance(line, bytes) else line.encode(self.encoding, "backslashreplace")
        with self._lock:
            if not self.broken:
                try:
                    view = memoryview(data)
                    while view:  # a signal can cut a write to a pipe short
                        view = view[os.write(self.fd, view) :]
                    return len(line)
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        self._discard()
            self.lines_lost += 1
            return len(line)

    def flush(self) -> None:
        """Nothing waits in a buffer here."""

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


_sink: LogSink | None = None


def log_lines_lost() -> int:
    """Log lines this process could not write since logging was configured."""
    return 0 if _sink is None else _sink.lines_lost


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """``auto`` means JSON unless stderr is a terminal."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    global _sink
    _sink = sink = LogSink(sys.stderr)
    shared: list[structlog.typing.Processor] = [
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
    connection's lifetime. The proxy's ``X-Request-Id`` and ``X-Forwarded-For`` are kept
    as they came, next to the peer address, never in its place.
    """

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._log = structlog.get_logger("game_server.access")

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self._log.info(
            "http",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round(time * 1000, 2),
            remote=request.remote,
            request_id=request.headers.get("X-Request-Id") or request.get(REQUEST_ID),
            forwarded_for=request.headers.get("X-Forwarded-For"),
            user_agent=request.headers.get("User-Agent"),
        )
