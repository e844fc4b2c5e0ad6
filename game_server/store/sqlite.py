"""The embedded store: players and finished matches in one SQLite file.

Every job runs on the storage thread (``store/writer.py``), so the game never waits on
the disk; this module is what the jobs are. WAL mode lets other processes read the file
while this one writes.

In WAL mode with ``synchronous = NORMAL`` a commit does not wait for the disk; only a
checkpoint (copying the log back into the database) calls fsync, and on a slow disk that
takes seconds. So checkpoints run on a second thread with its own connection, and the
writer never stalls behind one: a stalled writer means a growing backlog of jobs in
memory (measured: RSS 77 -> 163 MiB over 10 minutes at 1,000 matches/s on this VM).

Several processes may share the file: write batches take the lock up front (``BEGIN
IMMEDIATE``), migrations run under it, a match adds its result to the stored totals rather
than writing a process's own copy of them, and a WeChat openid belongs to the first row
that claimed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import structlog

from game_server.core.records import Picture, PlayerRecord
from game_server.store.base import PRUNE_BATCH, ThreadedStore
from game_server.store.batching import MATCH_ROW, RunSql
from game_server.store.schema import PLAYER_COLUMNS, PROFILE_ROW, migrate, player_from_row
from game_server.store.writer import BACKLOG_MAX

log = structlog.get_logger("game_server.store")

CHECKPOINT_SECONDS = 1.0
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log file is cut back to after a checkpoint
# A log this long (in bytes) gets a RESTART checkpoint, which holds the writer back until
# the log starts over: under steady writes PASSIVE never catches up, and the log (and its
# index, mapped into memory) would grow without end.
WAL_RESTART_BYTES = 2 * WAL_SIZE_LIMIT
BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock

# A player's profile. Its totals are written only into a new row: afterwards they move
# only by a match's increments (store/batching.py), so a process holding a stale copy of
# a player (several processes share the file) never overwrites what another one added.
SAVE_PLAYER = f"""
    INSERT INTO players ({PLAYER_COLUMNS})
    SELECT :id, :name, :avatar,
        -- A WeChat identity that another row holds (another process made that player
        -- first) stays there: this row goes on without it instead of failing every write.
        CASE WHEN EXISTS (SELECT 1 FROM players WHERE openid = :openid AND id <> :id)
            THEN NULL ELSE :openid END,
        :unionid, :total_score, :win_streak, :wins, :losses, :draws, :created_at, :last_seen,
        :rating, :rating_deviation, :rating_volatility, :rated_at
    WHERE true
    ON CONFLICT (id) DO UPDATE SET
        name = excluded.name, avatar = excluded.avatar,
        openid = coalesce(excluded.openid, openid), unionid = coalesce(excluded.unionid, unionid),
        last_seen = max(last_seen, excluded.last_seen)
"""
_INSERT_NEW_PLAYER = f"""
    INSERT INTO players ({PLAYER_COLUMNS})
    VALUES ({", ".join(":" + column for column in PROFILE_ROW)})
    ON CONFLICT DO NOTHING
"""


def _from_json(columns: tuple[str, ...]) -> str:
    """A table of ``columns`` from one parameter: a JSON array of rows (arrays)."""
    picks = ", ".join(f"value ->> {index} AS {name}" for index, name in enumerate(columns))
    return f"SELECT {picks} FROM json_each(?)"


# A run of finished matches (store/batching.py). "WHERE true" tells SQLite's parser that
# ON CONFLICT belongs to the INSERT, not to a join.
RUN_SQL = RunSql.build(
    _from_json,
    matches_tail="WHERE true",
    rows_tail="WHERE true",
    latest="max",
    lock_in_order=False,  # one writer at a time: SQLite locks the whole database
    encode=lambda text: text,  # bytes: sqlite3 binds them as a BLOB, which json_each reads
)


@contextlib.contextmanager
def sweep_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A sweep's own write transaction, between the writer's batches: the write lock at
    once (``BEGIN IMMEDIATE``), committed on success and rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def prune_guests(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` guests nobody can reach again: no WeChat identity, no game
    played, and last seen before ``before``, so every token issued to them has expired.
    Returns how many went."""
    with sweep_transaction(conn):
        deleted: int = conn.execute(
            # Left alone, the planner takes the openid index (IS NULL), i.e. every guest.
            "DELETE FROM players WHERE id IN (SELECT id FROM players "
            "INDEXED BY players_idle_guests "
            "WHERE openid IS NULL AND wins + losses + draws = 0 AND last_seen < ? LIMIT ?)",
            (before, limit),
        ).rowcount
    return deleted


def prune_matches(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` of the oldest matches that ended before ``before``, and their
    rounds. Returns how many matches went."""
    oldest = "SELECT id FROM matches WHERE ended_at < ? ORDER BY ended_at, id LIMIT ?"
    with sweep_transaction(conn):
        # The same query twice in one write transaction: the same matches both times.
        conn.execute(f"DELETE FROM rounds WHERE match_id IN ({oldest})", (before, limit))
        deleted: int = conn.execute(
            f"DELETE FROM matches WHERE id IN ({oldest})", (before, limit)
        ).rowcount
    return deleted


def prune_periods(conn: sqlite3.Connection, low: str, high: str, limit: int) -> int:
    """Delete up to ``limit`` leaderboard rows whose period key is in ``low <= key < high``
    (``core/ladder.periods_before``). Returns how many went."""
    with sweep_transaction(conn):
        deleted: int = conn.execute(
            "DELETE FROM period_scores WHERE (period, player_id) IN ("
            "SELECT period, player_id FROM period_scores "
            "WHERE period >= ? AND period < ? LIMIT ?)",
            (low, high, limit),
        ).rowcount
    return deleted


class SqliteDatabase:
    """How the writer opens and drives SQLite (see ``store.writer.Database``)."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout

    @property
    def reconnect_after_failure(self) -> bool:
        return self.path not in (":memory:", "")  # a new connection: a new, empty database

    @property
    def failure_aborts_transaction(self) -> bool:
        return False  # a failed statement undoes itself alone

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # First: another process may hold the write lock (or be migrating the same file).
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal" and self.path != ":memory:":
            # E.g. a file system without shared memory: then readers and the writer block
            # each other, and other processes cannot read while this one writes.
            log.warning("wal_unavailable", path=self.path, journal_mode=mode)
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across crashes of the process
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        migrate(conn)
        return conn

    def begin(self, conn: sqlite3.Connection, *, write: bool) -> None:
        # A batch with writes takes the write lock up front: with a deferred BEGIN, a write
        # after a read fails at once with "database is locked" once another process has
        # committed since the read, busy timeout or not.
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def execute(self, conn: sqlite3.Connection, sql: str) -> None:
        conn.execute(sql)

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def close(self, conn: sqlite3.Connection) -> None:
        conn.close()


class SqliteStore(ThreadedStore[sqlite3.Connection]):
    """The default store: one SQLite file (``:memory:`` for a throwaway one)."""

    run_sql = RUN_SQL
    mark = "?"

    def __init__(
        self,
        path: str,
        *,
        guest_ttl: float | None = None,
        keep_matches: float | None = None,
        backlog_max: int = BACKLOG_MAX,
        busy_timeout: float = BUSY_TIMEOUT,
        prune_batch: int = PRUNE_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``guest_ttl``, ``keep_matches``: see ``ThreadedStore``; ``busy_timeout``: seconds
        to wait for another process's write lock before a batch fails."""
        self.path = path
        self.restarts = 0  # RESTART checkpoints the log's length called for
        super().__init__(
            SqliteDatabase(path, busy_timeout),
            name="sqlite-store",
            guest_ttl=guest_ttl,
            keep_matches=keep_matches,
            backlog_max=backlog_max,
            prune_batch=prune_batch,
            clock=clock,
        )
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if path != ":memory:":
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    async def close(self) -> None:
        if self.writer.closed:
            return
        await super().close()
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)

    # ------------------------------------------------------------ SQL, on the writer thread

    def _save(self, conn: sqlite3.Connection, params: dict[str, Any]) -> None:
        conn.execute(SAVE_PLAYER, params)

    def _insert_new(self, conn: sqlite3.Connection, params: dict[str, Any]) -> None:
        conn.execute(_INSERT_NEW_PLAYER, params)

    def _load(self, conn: sqlite3.Connection, player_id: str) -> PlayerRecord | None:
        row = conn.execute(
            f"SELECT {PLAYER_COLUMNS} FROM players WHERE id = ?", (player_id,)
        ).fetchone()
        return None if row is None else player_from_row(row)

    def _by_openid(self, conn: sqlite3.Connection, openid: str | None) -> PlayerRecord | None:
        row = conn.execute(
            f"SELECT {PLAYER_COLUMNS} FROM players WHERE openid = ?", (openid,)
        ).fetchone()
        return None if row is None else player_from_row(row)

    def _leaderboard(self, conn: sqlite3.Connection, limit: int) -> list[PlayerRecord]:
        rows = conn.execute(
            f"SELECT {PLAYER_COLUMNS} FROM players WHERE wins + losses + draws > 0 "
            "ORDER BY total_score DESC, id LIMIT ?",
            (limit,),
        )
        return [player_from_row(row) for row in rows]

    def _recent_matches(
        self, conn: sqlite3.Connection, player_id: str, limit: int
    ) -> list[dict[str, Any]]:
        matches = conn.execute(
            f"SELECT {', '.join(MATCH_ROW)} FROM matches WHERE player1 = ? OR player2 = ? "
            "ORDER BY ended_at DESC, id DESC LIMIT ?",
            (player_id, player_id, limit),
        ).fetchall()
        out = []
        for match in matches:
            rounds = conn.execute(
                "SELECT round, choice1, choice2, outcome FROM rounds "
                "WHERE match_id = ? ORDER BY round",
                (match["id"],),
            ).fetchall()
            out.append({**dict(match), "rounds": [dict(r) for r in rounds]})
        return out

    def _rating_history(
        self, conn: sqlite3.Connection, player_id: str, limit: int
    ) -> list[tuple[str, float, float]]:
        rows = conn.execute(
            "SELECT id, ended_at, CASE WHEN player1 = ? THEN rating1_after ELSE rating2_after END "
            "FROM matches WHERE player1 = ? OR player2 = ? "
            "ORDER BY ended_at DESC, id DESC LIMIT ?",
            (player_id, player_id, player_id, limit),
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows if row[2] is not None]

    def _query(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]
    ) -> list[Mapping[str, Any]]:
        rows: list[Mapping[str, Any]] = conn.execute(sql, tuple(params)).fetchall()
        return rows

    def _prune_guests(self, conn: sqlite3.Connection, before: float, limit: int) -> int:
        return prune_guests(conn, before, limit)

    def _prune_matches(self, conn: sqlite3.Connection, before: float, limit: int) -> int:
        return prune_matches(conn, before, limit)

    def _prune_periods(self, conn: sqlite3.Connection, low: str, high: str, limit: int) -> int:
        return prune_periods(conn, low, high, limit)

    def _insert_picture(self, conn: sqlite3.Connection, picture: Picture) -> None:
        conn.execute(
            "INSERT INTO avatars (id, content_type, data, uploaded_by, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                picture.id,
                picture.content_type,
                picture.data,
                picture.uploaded_by,
                picture.created_at,
            ),
        )

    def _set_avatar(self, conn: sqlite3.Connection, player_id: str, url: str) -> bool:
        cursor = conn.execute("UPDATE players SET avatar = ? WHERE id = ?", (url, player_id))
        return cursor.rowcount > 0

    def _load_picture(self, conn: sqlite3.Connection, picture_id: str) -> Picture | None:
        row = conn.execute(
            "SELECT id, content_type, data, uploaded_by, created_at FROM avatars WHERE id = ?",
            (picture_id,),
        ).fetchone()
        return None if row is None else Picture(**dict(row))

    # ------------------------------------------------------------ the checkpoint thread

    def _checkpoint_loop(self) -> None:
        """Copy the log back into the database every second, off the writer's thread.

        PASSIVE never blocks the writer; the writer starts the log over once a checkpoint
        has caught up. Under steady writes one never quite does (the writer commits more
        while it copies), so a log past ``WAL_RESTART_BYTES`` gets a RESTART checkpoint:
        the writer waits for it (the loop goes on gathering writes meanwhile) and the log
        starts over. At close, a TRUNCATE checkpoint leaves just the database file.
        """
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            while not self._stop_checkpoints.wait(CHECKPOINT_SECONDS):
                frames = self._checkpoint(conn, "PASSIVE")
                if frames * page > WAL_RESTART_BYTES:
                    self._checkpoint(conn, "RESTART")
                    self.restarts += 1
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> int:
        """Run one checkpoint; returns the frames in the log (0 if it failed)."""
        try:
            row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error:
            log.exception("checkpoint_failed", mode=mode)
            return 0
        frames: int = row[1]
        return max(frames, 0)
