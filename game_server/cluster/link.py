"""This process's link to Redis: every command in order, one round trip per moment.

Whatever the process sends to Redis (the mailbox's stream entries, queue scripts, owner
keys, heartbeats, checkpoints) goes through ``submit``: commands gather and go out
together on one connection, so they are applied in the order they were submitted (a
connection pool could reorder two batches), and a busy moment costs one round trip, not
one per command. Each command says how long it may wait (``within``: ``GATHER_SECONDS``
unless the caller can wait longer); a batch leaves when the most pressing of its commands
is due, and takes everything pending, plus what the ``gatherers`` add (the journal's
checkpoints, which need not hurry, become one command in whichever batch leaves next).
The batch is written and read by ``RespConnection`` (hiredis, one wake-up per batch)
rather than redis-py's ``Pipeline`` or its connection's reply-at-a-time reads, whose
per-call machinery (command objects, retries, a timeout context per reply) cost a busy
node a quarter of its CPU (docs/cluster.md).

A batch that fails (Redis unreachable, the connection lost mid-way) fails every command
in it with ``LinkDown``: none is replayed, since a script may have run before its reply
was lost, and running it twice (a pairing) is worse than reporting it failed. The link
then pauses before the next attempt (doubling up to ``RETRY_MAX``), commands submitted
meanwhile wait (at most ``PENDING_MAX``), ``available`` turns false, and once a batch goes
through again it turns true and ``on_reconnect`` runs (so the cluster can re-assert what
it owns in a Redis that may have restarted empty).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from game_server.cluster.resp import RespConnection

log = structlog.get_logger("game_server.cluster")

PENDING_MAX = 50_000  # commands held while Redis is unreachable
RETRY_FIRST = 0.1  # seconds before the first retry; doubles up to RETRY_MAX
RETRY_MAX = 1.0
SOCKET_TIMEOUT = 2.0  # a batch unanswered this long counts as a lost connection
GATHER_SECONDS = 0.003  # a command waits at most this long for others (unless told more)

Command = tuple[Any, ...]  # a Redis command and its arguments: ("SET", key, value)
Done = Callable[[Any], None]  # the (last) command's reply, or the exception it raised
Op = tuple[Sequence[Command], Done | None]  # commands sent together, and who gets the reply


class Lua:
    """A Lua script run by its digest (``EVALSHA``).

    The link loads its scripts when it connects. A Redis that restarted empty answers
    ``NOSCRIPT`` (the script did not run): the link loads them again and runs those
    commands once more, which is safe precisely because they did not run.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class LinkDown(Exception):
    """Redis could not be reached and the command was given up."""


class RedisLink:
    def __init__(self, url: str) -> None:
        self.url = url
        # The client owns the connection pool; the batches use one connection of it.
        self.redis: Redis = Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
        )
        self.available = False
        self.failures = 0  # times the link went down
        self.dropped = 0  # commands given up while it was down
        self.batches = 0  # round trips made
        self.on_reconnect: list[Callable[[], None]] = []
        self.on_down: list[Callable[[], None]] = []
        self.scripts: list[Lua] = []
        # Called as each batch is made: commands that waited for any batch to ride along.
        self.gatherers: list[Callable[[], list[Op]]] = []
        self._pending: collections.deque[Op] = collections.deque()
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None  # the next batch's departure
        self._due = 0.0  # ... and when that is (loop time)
        self._task: asyncio.Task[None] | None = None
        self._connection: RespConnection | None = None
        self._closing = False

    def lua(self, source: str) -> Lua:
        """A script this link loads into Redis whenever it (re)connects."""
        script = Lua(source)
        self.scripts.append(script)
        return script

    async def start(self) -> None:
        """Connect, or raise: a node does not start without its Redis."""
        await self.redis.ping()
        await self._load_scripts()
        self.available = True
        self._task = asyncio.create_task(self._run(), name="redis-link")

    def submit(
        self,
        commands: Command | Sequence[Command],
        done: Done | None = None,
        *,
        within: float = GATHER_SECONDS,
    ) -> None:
        """Queue a command (or a few, in order) to leave within ``within`` seconds; ``done``
        gets the last one's reply, or the first error among them."""
        batch: Sequence[Command] = (
            (commands,) if commands and isinstance(commands[0], str) else commands
        )
        if len(self._pending) >= PENDING_MAX:
            _, lost = self._pending.popleft()
            self.dropped += 1
            if lost is not None:
                lost(LinkDown("redis is unreachable"))
        self._pending.append((batch, done))
        self.flush_within(within)

    def flush_within(self, seconds: float) -> None:
        """Have a batch leave within ``seconds`` (for what the gatherers hold)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + seconds
        timer = self._timer
        if timer is not None:
            if self._due <= due:
                return
            timer.cancel()
        self._due = due
        self._timer = loop.call_at(due, self._depart)

    def _depart(self) -> None:
        self._timer = None
        self._wake.set()

    async def call(self, commands: Command | Sequence[Command]) -> Any:
        """Submit and wait for the reply (raises what the command raised)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(reply: Any) -> None:
            if future.done():
                return
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

        self.submit(commands, done)
        return await future

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)
        await self._drop_connection()
        await self.redis.aclose()

    async def kill(self) -> None:
        """Stop at once, as a killed process would: nothing more is sent (tests)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_connection()
        await self.redis.aclose()

    # ------------------------------------------------------------ the batches

    async def _load_scripts(self) -> None:
        for script in self.scripts:
            await self.redis.script_load(script.source)

    async def _run(self) -> None:
        while True:
            # Woken when the most pressing command is due (or to close): whatever else
            # gathered by then goes in the same round trip.
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
                while self._closing and self._pending and self.available:
                    await self._drain()  # what came in meanwhile leaves before the end
            except Exception:  # a bug must not stop the link for good
                log.exception("redis_link_failed")
            if self._closing:
                return

    async def _drain(self) -> None:
        """One batch: everything pending and what the gatherers hold (again, after a
        pause, while Redis cannot be reached). What is submitted meanwhile waits for its
        own departure: a batch per ``within`` at most, however busy the moment."""
        pause = RETRY_FIRST
        pending = self._pending
        while True:
            # Every batch takes what the gatherers hold, first: what they hold is as new as
            # anything pending (a checkpoint made now), and a result relayed to another
            # process must not reach Redis before the checkpoint of its round.
            for gather in reversed(self.gatherers):
                pending.extendleft(reversed(gather()))
            if not pending:
                return
            batch = [pending.popleft() for _ in range(len(pending))]
            commands = [command for op, _ in batch for command in op]
            try:
                replies = await self._round_trip(commands)
            except (RedisError, OSError, TimeoutError) as exc:
                await self._drop_connection()
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
            if not self.available:
                self._came_back()
            again = self._answer(batch, replies)
            if not again:
                return
            # If the scripts cannot be loaded, the retried commands fail as the link
            # does, on their next attempt.
            with contextlib.suppress(RedisError, OSError):
                await self._load_scripts()
            pending.extendleft(reversed(again))

    def _answer(self, batch: list[Op], replies: list[Any]) -> list[Op]:
        """Hand each op its reply; the ops to send again (their script was not loaded)."""
        start = 0
        again: list[Op] = []
        for op, done in batch:
            end = start + len(op)
            errors = [r for r in replies[start:end] if isinstance(r, Exception)]
            start = end
            if errors and isinstance(errors[0], NoScriptError):
                again.append((op, done))  # it did not run: load the scripts, retry
                continue
            if done is not None:
                try:
                    done(errors[0] if errors else replies[end - 1])
                except Exception:
                    log.exception("redis_reply_failed")
        return again

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        """Write every command, then wait for every reply (an error reply as its
        exception), the whole batch under one timeout."""
        self.batches += 1
        async with asyncio.timeout(SOCKET_TIMEOUT):
            connection = self._connection
            if connection is not None and not connection.is_open:
                # Lost between two batches: Redis may have restarted (empty) in that
                # moment, and what this process holds there must be said again once the
                # new connection works, as after any outage.
                self._connection = None
                self._went_down(RedisConnectionError("connection to redis lost"))
                connection = None
            if connection is None:
                connection = await RespConnection.open(self.url)
                self._connection = connection
            return await connection.batch(commands)

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

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
