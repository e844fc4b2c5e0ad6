"""What every store does the same way, whatever its engine: the ``Storage`` port over a
writer thread (``store/writer.py``).

``SqliteStore`` and ``PostgresStore`` extend ``ThreadedStore`` and supply only their
connection handling (a ``Database``) and their SQL, as the methods below marked "the
engine's". So both engines share one set of rules: fire-and-forget writes gathered on the
loop, a finished match stored in bulk and counted once, reads answered after the commit,
a failed batch's reads raising ``StoreUnavailable`` and its writes counted as lost, and a
bounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, Generic, TypeVar, cast

import structlog

from game_server.core.ladder import Board, Period, periods_before
from game_server.core.ports import LoadDone, StoreUnavailable
from game_server.core.records import MatchRecord, Picture, PlayerRecord
from game_server.store import ladder
from game_server.store.batching import Connection, RunSql, bulk_maker, insert_matches
from game_server.store.ladder import Standing
from game_server.store.schema import player_params
from game_server.store.writer import BACKLOG_MAX, Database, Writer

log = structlog.get_logger("game_server.store")

C = TypeVar("C")

PRUNE_EVERY = 3600.0  # seconds between sweeps (guests, old history), and one at start-up
PRUNE_BATCH = 1000  # rows deleted per sweep transaction; a full one sweeps again soon


class ThreadedStore(Generic[C]):
    """The ``Storage`` port on one connection owned by a writer thread."""

    run_sql: RunSql  # the engine's bulk statements for a run of finished matches
    mark: str  # the engine's placeholder in SQL ("?" or "%s")

    def __init__(
        self,
        database: Database[C],
        *,
        name: str,
        guest_ttl: float | None = None,
        keep_matches: float | None = None,
        backlog_max: int = BACKLOG_MAX,
        prune_batch: int = PRUNE_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``guest_ttl``: delete guests who never played, have no WeChat identity and were
        last seen longer ago than this (at start-up, then hourly): at least the token
        lifetime, since nobody can come back to them once their last token has expired.
        None keeps every player. ``keep_matches``: delete matches (with their rounds) that
        ended longer ago than this many seconds, and the day and week leaderboard points of
        periods that ended before then (at start-up, then hourly); None keeps them all.
        Raises if the database cannot be opened or migrated."""
        if keep_matches is not None and keep_matches <= 0:
            raise ValueError("matches must be kept for a positive time")
        self.guest_ttl = guest_ttl
        self.keep_matches = keep_matches
        self.prune_batch = prune_batch
        self.clock = clock
        self.pruned = 0  # guests deleted so far
        self.matches_pruned = 0  # old matches deleted so far
        self.periods_pruned = 0  # leaderboard rows of past days and weeks deleted so far
        sweeping = guest_ttl is not None or keep_matches is not None
        self.writer: Writer[C] = Writer(
            database,
            name=name,
            make_bulk=bulk_maker(self.run_sql),
            backlog_max=backlog_max,
            housekeeping=self._sweep if sweeping else None,
            clock=clock,
        )

    # ------------------------------------------------------------ the engine's (on the thread)

    def _save(self, conn: C, params: dict[str, Any]) -> None:
        """Upsert a profile; its totals only into a new row (matches add to them)."""
        raise NotImplementedError

    def _insert_new(self, conn: C, params: dict[str, Any]) -> None:
        """Insert a player unless its id or its openid is taken (nothing happens then)."""
        raise NotImplementedError

    def _load(self, conn: C, player_id: str) -> PlayerRecord | None:
        raise NotImplementedError

    def _by_openid(self, conn: C, openid: str | None) -> PlayerRecord | None:
        raise NotImplementedError

    def _leaderboard(self, conn: C, limit: int) -> list[PlayerRecord]:
        """Players who played, best total first, ties by id (in byte order)."""
        raise NotImplementedError

    def _recent_matches(self, conn: C, player_id: str, limit: int) -> list[dict[str, Any]]:
        """A player's matches, newest first (ties by id, descending), with their rounds."""
        raise NotImplementedError

    def _rating_history(
        self, conn: C, player_id: str, limit: int
    ) -> list[tuple[str, float, float]]:
        """A player's last ``limit`` rated matches, newest first: (match id, ended at, its
        rating after the match). Matches stored before ratings are left out."""
        raise NotImplementedError

    def _query(self, conn: C, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        """Rows of one statement, as mappings by column name."""
        raise NotImplementedError

    def _prune_guests(self, conn: C, before: float, limit: int) -> int:
        """Delete up to ``limit`` unreachable guests last seen before ``before``, in a
        transaction of its own; how many went."""
        raise NotImplementedError

    def _prune_matches(self, conn: C, before: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest matches that ended before ``before``, with
        their rounds, in a transaction of its own; how many went."""
        raise NotImplementedError

    def _prune_periods(self, conn: C, low: str, high: str, limit: int) -> int:
        """Delete up to ``limit`` rows of ``period_scores`` whose key is in ``low <= key <
        high``, in a transaction of its own; how many went."""
        raise NotImplementedError

    def _insert_picture(self, conn: C, picture: Picture) -> None:
        """Insert an avatar picture unless its id is stored already."""
        raise NotImplementedError

    def _set_avatar(self, conn: C, player_id: str, url: str) -> bool:
        """Set a stored player's avatar; whether there was such a player."""
        raise NotImplementedError

    def _load_picture(self, conn: C, picture_id: str) -> Picture | None:
        raise NotImplementedError

    # ------------------------------------------------------------ the service's port

    def load_player(self, player_id: str, done: LoadDone) -> None:
        """Read a player and call ``done`` with it (or ``StoreUnavailable``) on the loop."""
        loop = asyncio.get_running_loop()
        future = self.writer.submit(lambda conn: self._load(conn, player_id), write=False)

        def deliver(result: Future[PlayerRecord | None]) -> None:
            record: PlayerRecord | StoreUnavailable | None
            try:
                record = result.result()
            except Exception as exc:
                log.error("load_player_failed", player_id=player_id, error=repr(exc))
                record = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(repr(exc))
            # The loop may have closed while reading: then nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(done, record)

        future.add_done_callback(deliver)

    def save_player(self, record: PlayerRecord) -> None:
        params = player_params(record)
        self.writer.write(lambda conn: self._save(conn, params))

    def record_match(self, record: MatchRecord) -> None:
        """Store a finished match and add its results to its players' totals, once: a
        match whose id is stored already adds nothing."""
        sql = self.run_sql
        self.writer.write(
            lambda conn: insert_matches(sql, cast(Connection, conn), [record]), match=record
        )

    # ------------------------------------------------------------ queries for the shell

    async def find_by_openid(self, openid: str) -> PlayerRecord | None:
        return await self.writer.read(lambda conn: self._by_openid(conn, openid))

    async def claim_openid(self, record: PlayerRecord) -> PlayerRecord:
        """The player with ``record.openid``: the stored one, else ``record``, stored now.

        One write transaction, so when two processes log in the same new WeChat user at
        once, the first to insert makes the player and the other gets it.
        """
        params = player_params(record)
        openid = record.openid

        def claim(conn: C) -> PlayerRecord:
            self._insert_new(conn, params)
            return self._by_openid(conn, openid) or record

        return await asyncio.wrap_future(self.writer.submit(claim, write=True))

    async def get_player(self, player_id: str) -> PlayerRecord | None:
        return await self.writer.read(lambda conn: self._load(conn, player_id))

    async def leaderboard(self, limit: int) -> list[PlayerRecord]:
        return await self.writer.read(lambda conn: self._leaderboard(conn, limit))

    async def recent_matches(self, player_id: str, limit: int) -> list[dict[str, Any]]:
        return await self.writer.read(lambda conn: self._recent_matches(conn, player_id, limit))

    async def store_avatar(self, picture: Picture, player_id: str, url: str) -> bool:
        """Keep ``picture`` and make ``url`` the stored player's avatar, in one write
        transaction: when this returns, every node sharing the database serves the
        picture. False if no such player is stored (a guest who has not finished a
        match yet: its live copy carries the URL, and is stored with it later)."""

        def store(conn: C) -> bool:
            self._insert_picture(conn, picture)
            return self._set_avatar(conn, player_id, url)

        return await asyncio.wrap_future(self.writer.submit(store, write=True))

    async def get_avatar(self, picture_id: str) -> Picture | None:
        return await self.writer.read(lambda conn: self._load_picture(conn, picture_id))

    async def rating_history(self, player_id: str, limit: int) -> list[tuple[str, float, float]]:
        return await self.writer.read(lambda conn: self._rating_history(conn, player_id, limit))

    async def standings(
        self,
        board: Board,
        period: Period,
        limit: int,
        around: str | None = None,
        now: float | None = None,
    ) -> list[Standing] | None:
        """A page of a leaderboard (``store/ladder.py``): the top ``limit``, or ``limit``
        rows around the player ``around`` (None if it is not on that board). ``now``
        (Unix seconds; the clock's by default) picks the day or week."""
        when = self.clock() if now is None else now

        def read(conn: C) -> list[Standing] | None:
            query = partial(self._query, conn)
            return ladder.standings(query, self.mark, board, period, limit, around, when)

        return await self.writer.read(read)

    async def rank_by_score(self, player_id: str) -> int | None:
        """Its rank on the all-time score board; None if it never played."""
        return await self.writer.read(
            lambda conn: ladder.rank_by_score(partial(self._query, conn), self.mark, player_id)
        )

    # ------------------------------------------------------------ health and lifecycle

    @property
    def backlog(self) -> int:
        """Jobs waiting for the writer thread: steady near zero, or the database cannot
        keep up."""
        return self.writer.backlog

    @property
    def failures(self) -> int:
        """Batches given up because their transaction failed."""
        return self.writer.failures

    @property
    def writes_dropped(self) -> int:
        """Writes lost: in failed batches, or refused because the backlog was full."""
        return self.writer.writes_dropped

    @property
    def swept(self) -> dict[str, int]:
        """Rows the sweeps deleted so far, by kind (counted on the writer thread)."""
        return {
            "guests": self.pruned,
            "matches": self.matches_pruned,
            "period_rows": self.periods_pruned,
        }

    async def flush(self) -> None:
        """Wait until everything written so far is committed."""
        await self.writer.read(lambda conn: None)

    async def committed(self) -> None:
        """Wait until everything written so far is committed, in its own time: the
        writes are not hurried out of their batch as by ``flush``."""
        await asyncio.wrap_future(self.writer.committed())

    async def close(self) -> None:
        await self.writer.close()

    # ------------------------------------------------------------ housekeeping

    def _sweep(self, conn: C) -> float:
        """One turn of the sweeps (on the writer thread, between batches): a batch of
        unreachable guests, of old matches and of past periods' points, as configured.
        Returns when to sweep next: at once if a batch came back full (after whatever is
        queued meanwhile), else in ``PRUNE_EVERY``."""
        now = self.clock()
        more = False
        if self.guest_ttl is not None:
            more |= self._sweep_guests(conn, now - self.guest_ttl)
        if self.keep_matches is not None:
            more |= self._sweep_history(conn, now - self.keep_matches)
        return now if more else now + PRUNE_EVERY

    def _sweep_guests(self, conn: C, before: float) -> bool:
        try:
            deleted = self._prune_guests(conn, before, self.prune_batch)
        except self.writer.database.errors:
            log.exception("guest_prune_failed")
            return False
        self.pruned += deleted
        if deleted:
            log.info("guests_pruned", deleted=deleted, total=self.pruned)
        return deleted == self.prune_batch

    def _sweep_history(self, conn: C, before: float) -> bool:
        """Matches that ended before ``before``, and the points of days and weeks that
        ended before it (the period that holds ``before`` is kept whole)."""
        batch = self.prune_batch
        try:
            matches = self._prune_matches(conn, before, batch)
            full = matches == batch
            periods = 0
            for low, high in periods_before(before):
                deleted = self._prune_periods(conn, low, high, batch)
                full |= deleted == batch
                periods += deleted
        except self.writer.database.errors:
            log.exception("history_prune_failed")
            return False
        self.matches_pruned += matches
        self.periods_pruned += periods
        if matches or periods:
            log.info(
                "history_pruned",
                matches=matches,
                period_rows=periods,
                total_matches=self.matches_pruned,
            )
        return full
