"""This process's link to Redis: every command in order, one round trip per loop turn.

Whatever the process sends to Redis (the mailbox's stream entries, queue scripts, owner
keys, heartbeats) goes through ``submit``: operations gather during a turn of the event
loop and go out as one pipeline on one connection, so they are applied in the order they
were submitted (a connection pool could reorder two pipelines), and a busy turn costs one
round trip, not one per command.

A pipeline that fails (Redis unreachable, the connection lost mid-way) fails every
operation in it with ``LinkDown``: none is replayed, since a script may have run before
its reply was lost, and running it twice (a pairing) is worse than reporting it failed.
The link then pauses before the next attempt (doubling up to ``RETRY_MAX``), operations
submitted meanwhile wait (at most ``PENDING_MAX``), ``available`` turns false, and once a
pipeline goes through again it turns true and ``on_reconnect`` runs (so the cluster can
re-assert what it owns in a Redis that may have restarted empty).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = structlog.get_logger("game_server.cluster")

PENDING_MAX = 50_000  # operations held while Redis is unreachable
RETRY_FIRST = 0.1  # seconds before the first retry; doubles up to RETRY_MAX
RETRY_MAX = 1.0
SOCKET_TIMEOUT = 2.0  # a command unanswered this long counts as a lost connection

Build = Callable[[Pipeline], Any]  # adds one command to the pipeline (or a few)
Done = Callable[[Any], None]  # the (last) command's reply, or the exception it raised


class Lua:
    """A Lua script sent with ``EVAL`` inside the link's pipelines.

    ``EVAL``, not ``EVALSHA``: a Redis that restarted empty has no scripts cached, and an
    ``EVALSHA`` would then fail inside a pipeline that cannot be replayed. Redis caches
    the compiled script by its digest either way; what ``EVAL`` costs more is the
    script's few hundred bytes per call.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def add(self, pipe: Pipeline, keys: list[str], args: list[Any]) -> Any:
        return pipe.eval(self.source, len(keys), *keys, *args)


class LinkDown(Exception):
    """Redis could not be reached and the operation was given up."""


class RedisLink:
    def __init__(self, url: str) -> None:
        self.url = url
        self.redis: Redis = Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
        )
        self.available = False
        self.failures = 0  # times the link went down
        self.dropped = 0  # operations given up while it was down
        self.on_reconnect: list[Callable[[], None]] = []
        self.on_down: list[Callable[[], None]] = []
        self._pending: collections.deque[tuple[Build, Done | None]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Connect, or raise: a node does not start without its Redis."""
        await self.redis.ping()
        self.available = True
        self._task = asyncio.create_task(self._run(), name="redis-link")

    def reader(self) -> Redis:
        """A second connection of its own, for a command that blocks (XREAD BLOCK)."""
        return Redis.from_url(self.url, socket_timeout=None, socket_connect_timeout=SOCKET_TIMEOUT)

    def submit(self, build: Build, done: Done | None = None) -> None:
        """Queue one command (``build`` adds it to the pipeline); ``done`` gets its reply."""
        if len(self._pending) >= PENDING_MAX:
            _, lost = self._pending.popleft()
            self.dropped += 1
            if lost is not None:
                lost(LinkDown("redis is unreachable"))
        self._pending.append((build, done))
        if not self._wake.is_set():
            self._wake.set()

    async def call(self, build: Build) -> Any:
        """Submit one command and wait for its reply (raises what it raised)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(reply: Any) -> None:
            if future.done():
                return
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

        self.submit(build, done)
        return await future

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)
        await self.redis.aclose()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except Exception:  # a bug must not stop the link for good
                log.exception("redis_link_failed")
            if self._closing:
                return

    async def _drain(self) -> None:
        pause = RETRY_FIRST
        pending = self._pending
        while pending:
            batch = [pending.popleft() for _ in range(len(pending))]
            pipe = self.redis.pipeline(transaction=False)
            ends = []  # where each operation's commands end in the pipeline
            for build, _ in batch:
                build(pipe)
                ends.append(len(pipe.command_stack))
            try:
                replies = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError) as exc:
                self._went_down(exc)
                failure = LinkDown(f"redis is unreachable: {exc!r}")
                for _, done in batch:
                    if done is not None:
                        done(failure)
                if self._closing:
                    return
                await asyncio.sleep(pause)
                pause = min(RETRY_MAX, pause * 2)
                continue
            pause = RETRY_FIRST
            if not self.available:
                self._came_back()
            start = 0
            for (_, done), end in zip(batch, ends, strict=True):
                if done is not None:
                    errors = [r for r in replies[start:end] if isinstance(r, Exception)]
                    try:
                        done(errors[0] if errors else replies[end - 1])
                    except Exception:
                        log.exception("redis_reply_failed")
                start = end

    def _went_down(self, exc: BaseException) -> None:
        if self.available:
            self.available = False
            self.failures += 1
            log.warning("redis_unreachable", error=repr(exc))
            for hook in self.on_down:
                hook()

    def _came_back(self) -> None:
        self.available = True
        log.info("redis_reachable")
        for hook in self.on_reconnect:
            try:
                hook()
            except Exception:
                log.exception("redis_reconnect_hook_failed")
