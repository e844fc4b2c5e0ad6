"""Messages between the processes of a cluster: one Redis stream per process, read by it.

A process posts to another with ``post(node, message, frame)``. Messages gather during a
turn of the event loop and leave as one stream entry per destination (``XADD``), through
the link's single ordered connection, so a destination sees a sender's messages in the
order they were posted. A frame (a client's frame, or one encoded for a client) rides as
a raw field of the entry beside the JSON header, so it is never escaped or re-encoded on
the way.

Streams, not pub/sub: an entry waits in the stream while its reader reconnects, where
pub/sub drops it. Entries can still be lost (Redis restarted empty, the stream trimmed
past a reader that fell far behind, an ``XADD`` that failed), so each entry carries a
sequence number per sender and sender start (``epoch``); a receiver that finds a number
missing reports the gap (``on_gap``) and the cluster resets what the two processes shared
(see ``cluster/node.py``). A sender whose ``XADD`` failed reports the same (``on_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError

from game_server.cluster.link import RedisLink

log = structlog.get_logger("game_server.cluster")

STREAM_MAXLEN = 100_000  # entries kept per inbox (approximately): far more than in flight
READ_BLOCK_MS = 1000
READ_COUNT = 512
READ_RETRY = 0.5  # seconds between attempts while Redis cannot be read

Handler = Callable[[str, list[Any], bytes | None], None]


class Mailbox:
    def __init__(self, link: RedisLink, node_id: str, inbox: Callable[[str], str]) -> None:
        self.link = link
        self.node_id = node_id
        self.inbox_key = inbox  # the stream of a node
        self.epoch = secrets.token_hex(4)  # this start of this process
        self.handlers: dict[str, Handler] = {}
        self.on_gap: Callable[[str], None] = lambda node: None
        self.on_lost: Callable[[str], None] = lambda node: None
        self.sent = 0  # messages posted to other processes
        self.received = 0  # messages read from this process's inbox
        self.gaps = 0  # sequence gaps found (lost entries)
        self._seq: dict[str, int] = {}  # per destination
        self._heard: dict[str, tuple[str, int]] = {}  # per sender: (epoch, last seq)
        self._outgoing: dict[str, tuple[list[list[Any]], list[bytes]]] = {}
        self._flush_scheduled = False
        self._reader_task: asyncio.Task[None] | None = None
        # From the start of the stream, which ``start`` empties: "$" would skip whatever
        # arrives between the start and the first XREAD.
        self._last_id = "0-0"

    # ------------------------------------------------------------ sending

    def post(self, to: str, message: list[Any], frame: bytes | None = None) -> None:
        """Send ``message`` (a JSON-able list whose first item is its kind) to ``to``."""
        batch = self._outgoing.get(to)
        if batch is None:
            batch = self._outgoing[to] = ([], [])
        messages, frames = batch
        if frame is None:
            messages.append([*message, None])
        else:
            messages.append([*message, len(frames)])
            frames.append(frame)
        self.sent += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, {}
        for to, (messages, frames) in outgoing.items():
            seq = self._seq.get(to, 0) + 1
            self._seq[to] = seq
            command: list[Any] = ["XADD", self.inbox_key(to), "MAXLEN", "~", STREAM_MAXLEN, "*"]
            command += ("h", orjson.dumps([self.node_id, self.epoch, seq, messages]))
            for index, frame in enumerate(frames):
                command += (str(index), frame)
            self.link.submit(tuple(command), partial(self._sent, to))

    def _sent(self, to: str, reply: Any) -> None:
        if isinstance(reply, Exception):
            log.warning("mailbox_entry_lost", to=to, error=repr(reply))
            self.on_lost(to)

    # ------------------------------------------------------------ receiving

    async def start(self) -> None:
        """Start reading; mail left for an earlier process of the same name is dropped
        (its sessions are not this process's)."""
        await self.link.call(("DEL", self.inbox_key(self.node_id)))
        self._reader_task = asyncio.create_task(self._read(), name="mailbox-reader")

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    async def _read(self) -> None:
        """Read this process's inbox, blocking in Redis until something comes. On a
        connection of its own, written and read with redis-py's connection directly (as
        the link does), since this loop runs for every batch of messages."""
        key = self.inbox_key(self.node_id)
        connection = None
        while True:
            try:
                if connection is None:
                    connection = self.link.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
                    await connection.connect()
                await connection.send_command(
                    "XREAD",
                    "COUNT",
                    READ_COUNT,
                    "BLOCK",
                    READ_BLOCK_MS,
                    "STREAMS",
                    key,
                    self._last_id,
                )
                replies: Any = await connection.read_response()
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("mailbox_read_failed", error=repr(exc))
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.disconnect()
                connection = None
                await asyncio.sleep(READ_RETRY)
                continue
            except asyncio.CancelledError:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.disconnect()
                raise
            # RESP3 answers a map of streams, RESP2 a list of [stream, entries] pairs.
            streams = replies.items() if isinstance(replies, dict) else (replies or ())
            for _, entries in streams:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    try:
                        self._deliver(dict(zip(fields[::2], fields[1::2], strict=True)))
                    except Exception:
                        log.exception("mailbox_entry_failed")

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        sender, epoch, seq, messages = orjson.loads(fields[b"h"])
        heard = self._heard.get(sender)
        if heard is not None and heard[0] == epoch:
            if seq <= heard[1]:
                return  # seen already
            if seq != heard[1] + 1:
                self.gaps += 1
                log.warning("mailbox_gap", sender=sender, expected=heard[1] + 1, got=seq)
                self.on_gap(sender)
        self._heard[sender] = (epoch, seq)
        handlers = self.handlers
        for message in messages:
            index = message.pop()
            frame = None if index is None else fields[str(index).encode()]
            self.received += 1
            handler = handlers.get(message[0])
            if handler is None:
                log.warning("mailbox_unknown_message", kind=message[0], sender=sender)
                continue
            handler(sender, message, frame)
