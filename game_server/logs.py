"""structlog set-up: one JSON object per line for machines, colours for people."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

LogFormat = Literal["auto", "json", "console"]
REQUEST_ID = web.RequestKey("request_id", str)


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """``auto`` means JSON unless stderr is a terminal."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor
    logger_factory: structlog.BytesLoggerFactory | structlog.PrintLoggerFactory
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        logger_factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        renderer = structlog.dev.ConsoleRenderer()
        logger_factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    # aiohttp and asyncio report through the standard library; keep their warnings visible.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")


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
