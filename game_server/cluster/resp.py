"""One connection to Redis for the link's batches: hiredis packs and parses, nothing else.

The link writes a batch of commands and waits for as many replies, in order. redis-py's
connection reads replies one ``await`` at a time, each under its own timeout context
(a timer, a task lookup and a ``getpid`` per reply): on a busy node that was most of
what the link cost. Here hiredis, the C reader and packer redis-py itself uses, parses
whatever bytes arrive as they arrive, and a batch's future resolves once its last reply
is in: one wake-up per batch. redis-py still parses the URL, and still serves the
mailbox's blocking reads and the start-up commands, where one call at a time is right.

Replies are RESP3 (``HELLO 3``), the protocol redis-py's client speaks, so a reply has the
same Python type on either path. An error reply is a ``ResponseError`` (``NoScriptError``
for ``NOSCRIPT``) in the batch's list, as redis-py raises them.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ResponseError


class RespConnection(asyncio.Protocol):
    """A Redis connection that answers batches: ``await connection.batch(commands)``."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._transport: asyncio.Transport | None = None
        # Batches written and not yet answered, oldest first: (replies so far, expected, future).
        self._waiting: collections.deque[tuple[list[Any], int, asyncio.Future[list[Any]]]] = (
            collections.deque()
        )
        self._lost: Exception | None = None

    @classmethod
    async def open(cls, url: str) -> RespConnection:
        """Connect to the Redis of a ``redis://``, ``rediss://`` or ``unix://`` URL, log in
        and choose the database it names. The caller bounds the time this takes."""
        options = parse_url(url)
        loop = asyncio.get_running_loop()
        connection = cls()
        if "path" in options:
            await loop.create_unix_connection(lambda: connection, options["path"])
        else:
            context = (
                ssl.create_default_context()
                if options.get("connection_class") is SSLConnection
                else None
            )
            await loop.create_connection(
                lambda: connection,
                options.get("host", "localhost"),
                options.get("port", 6379),
                ssl=context,
            )
        hello: list[Any] = ["HELLO", 3]
        if options.get("password") is not None:
            hello += ["AUTH", options.get("username") or "default", options["password"]]
        setup: list[tuple[Any, ...]] = [tuple(hello)]
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        for reply in await connection.batch(setup):
            if isinstance(reply, Exception):
                connection.close()
                raise reply
        return connection

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._lost is None

    def batch(self, commands: Sequence[tuple[Any, ...]]) -> asyncio.Future[list[Any]]:
        """Write the commands; the future gets one reply (or error) per command, in order."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self._lost is not None or self._transport is None:
            future.set_exception(self._lost or RedisConnectionError("not connected"))
            return future
        self._transport.writelines([hiredis.pack_command(command) for command in commands])
        self._waiting.append(([], len(commands), future))
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            reply = reader.gets()
        except InvalidResponse as exc:  # not Redis speaking, or a stream out of step
            self._fail(exc)
            return
        while reply is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._fail(InvalidResponse("unexpected reply from redis"))
                return
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                reply = NoScriptError(str(reply))
            replies, expected, future = waiting[0]
            replies.append(reply)
            if len(replies) == expected:
                waiting.popleft()
                if not future.done():
                    future.set_result(replies)
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self._fail(exc)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to redis lost: {exc!r}"))

    def _fail(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        while self._waiting:
            _, _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
