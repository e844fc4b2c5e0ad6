"""SQLite storage for players and finished matches, off the event loop.

One thread owns the connection and runs every job in order, so the game never waits on
the disk. Writes are fire-and-forget: they gather on the loop for up to
``HANDOFF_SECONDS`` and reach the thread together (waking it for each finished match cost
a busy server a tenth of its CPU in futex calls and GIL hand-offs), and a run of finished
matches goes into a handful of multi-row statements (half the CPU of a statement per
row). Each wake-up's jobs run in one transaction. A read first hands over the writes
gathered before it, so it sees them, and comes back as a future (``load_player`` as a
callback on the loop, so the sans-I/O service can use it). WAL mode lets other processes
read the file while this one writes. The schema is versioned with ``PRAGMA user_version``.

In WAL mode with ``synchronous = NORMAL`` a commit does not wait for the disk; only a
checkpoint (copying the log back into the database) calls fsync, and on a slow disk that
takes seconds. So checkpoints run on a second thread with its own connection, and the
writer never stalls behind one: a stalled writer means a growing backlog of jobs in
memory (measured: RSS 77 -> 163 MiB over 10 minutes at 1,000 matches/s on this VM).

A batch whose transaction fails as a whole (BEGIN, COMMIT or ROLLBACK: a full disk, an
I/O error, a lock held too long) is given up: its reads raise ``StoreUnavailable``, its
writes are lost and counted, and the thread goes on with a fresh connection. The backlog
is bounded: past ``backlog_max`` waiting jobs, new writes are dropped (and counted) rather
than kept in memory while the disk is broken.

Several processes may share the file: write batches take the lock up front (``BEGIN
IMMEDIATE``), migrations run under it, a match adds its result to the stored totals rather
than writing a process's own copy of them, and a WeChat openid belongs to the first row
that claimed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

import orjson
import structlog

from game_server.core.ports import LoadDone, StoreUnavailable
from game_server.core.records import MatchRecord, PlayerRecord, PlayerResult

log = structlog.get_logger("game_server.store.sqlite")

T = TypeVar("T")

CHECKPOINT_SECONDS = 1.0
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the log file is cut back to after a checkpoint
# A log this long (in bytes) gets a RESTART checkpoint, which holds the writer back until
# the log starts over: under steady writes PASSIVE never catches up, and the log (and its
# index, mapped into memory) would grow without end.
WAL_RESTART_BYTES = 2 * WAL_SIZE_LIMIT
BUSY_TIMEOUT = 5.0  # seconds to wait for another process's write lock
# Jobs waiting for the writer beyond which new writes are dropped: about 15 s of a
# saturated server's writes, some 100 MiB. Normally the backlog is near zero.
BACKLOG_MAX = 50_000
# Writes wait on the loop this long (or until this many gather) before the writer wakes.
HANDOFF_SECONDS = 0.05
HANDOFF_MAX = 1000
FAILURE_PAUSE = 0.5  # after a failed batch: lets jobs gather instead of failing one by one
PRUNE_EVERY = 3600.0  # seconds between sweeps for unreachable guests (and one at start-up)
PRUNE_BATCH = 1000  # rows deleted per sweep transaction; a full one sweeps again soon

# Each entry moves the schema from version N to N + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE players (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        avatar TEXT,
        openid TEXT UNIQUE,
        unionid TEXT,
        total_score INTEGER NOT NULL DEFAULT 0,
        win_streak INTEGER NOT NULL DEFAULT 0,
        wins INTEGER NOT NULL DEFAULT 0,
        losses INTEGER NOT NULL DEFAULT 0,
        draws INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX players_by_score ON players (total_score DESC, id);
    CREATE TABLE matches (
        id TEXT PRIMARY KEY,
        player1 TEXT NOT NULL,
        name1 TEXT NOT NULL,
        bot1 INTEGER NOT NULL,
        player2 TEXT NOT NULL,
        name2 TEXT NOT NULL,
        bot2 INTEGER NOT NULL,
        winner TEXT,
        reason TEXT NOT NULL,
        best_of INTEGER NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL NOT NULL
    );
    CREATE INDEX matches_by_player1 ON matches (player1, ended_at DESC);
    CREATE INDEX matches_by_player2 ON matches (player2, ended_at DESC);
    CREATE TABLE rounds (
        match_id TEXT NOT NULL REFERENCES matches (id),
        round INTEGER NOT NULL,
        choice1 TEXT,
        choice2 TEXT,
        outcome TEXT NOT NULL,
        PRIMARY KEY (match_id, round)
    ) WITHOUT ROWID;
    """,
    # 2: guests who never played and have no WeChat identity, by age, for the sweep.
    """
    CREATE INDEX players_idle_guests ON players (last_seen)
        WHERE openid IS NULL AND wins + losses + draws = 0;
    """,
)

# A players row, in column order: the SELECTs, the profile rows of a run of matches and
# the named parameters of a new row all follow it.
_PROFILE_ROW = (
    "id", "name", "avatar", "openid", "unionid", "total_score", "win_streak", "wins",
    "losses", "draws", "created_at", "last_seen",
)  # fmt: skip
_PLAYER_COLUMNS = ", ".join(_PROFILE_ROW)
# A player's profile. Its totals are written only into a new row: afterwards they move
# only by a match's increments (_record_players), so a process holding a stale copy of a
# player (several processes share the file) never overwrites what another one added.
_SAVE_PLAYER = f"""
    INSERT INTO players ({_PLAYER_COLUMNS})
    SELECT :id, :name, :avatar,
        -- A WeChat identity that another row holds (another process made that player
        -- first) stays there: this row goes on without it instead of failing every write.
        CASE WHEN EXISTS (SELECT 1 FROM players WHERE openid = :openid AND id <> :id)
            THEN NULL ELSE :openid END,
        :unionid, :total_score, :win_streak, :wins, :losses, :draws, :created_at, :last_seen
    WHERE true
    ON CONFLICT (id) DO UPDATE SET
        name = excluded.name, avatar = excluded.avatar,
        openid = coalesce(excluded.openid, openid), unionid = coalesce(excluded.unionid, unionid),
        last_seen = max(last_seen, excluded.last_seen)
"""
_INSERT_NEW_PLAYER = f"""
    INSERT INTO players ({_PLAYER_COLUMNS})
    VALUES ({", ".join(":" + column for column in _PROFILE_ROW)})
    ON CONFLICT DO NOTHING
"""


def _player_params(record: PlayerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "avatar": record.avatar,
        "openid": record.openid,
        "unionid": record.unionid,
        "total_score": record.total_score,
        "win_streak": record.win_streak,
        "wins": record.wins,
        "losses": record.losses,
        "draws": record.draws,
        "created_at": record.created_at,
        "last_seen": record.last_seen,
    }


def prune_guests(conn: sqlite3.Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` guests nobody can reach again: no WeChat identity, no game
    played, and last seen before ``before``, so every token issued to them has expired.
    Returns how many went."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted: int = conn.execute(
            # Left alone, the planner takes the openid index (IS NULL), i.e. every guest.
            "DELETE FROM players WHERE id IN (SELECT id FROM players "
            "INDEXED BY players_idle_guests "
            "WHERE openid IS NULL AND wins + losses + draws = 0 AND last_seen < ? LIMIT ?)",
            (before, limit),
        ).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return deleted


def _from_json(columns: tuple[str, ...]) -> str:
    """A table of ``columns`` from one parameter: a JSON array of rows (arrays)."""
    picks = ", ".join(f"value ->> {index} AS {name}" for index, name in enumerate(columns))
    return f"SELECT {picks} FROM json_each(?)"


# A run of finished matches reaches SQLite as one JSON text per statement, made on the
# loop when the run is handed over. The writer thread then binds one value per statement
# and SQLite reads the rows inside sqlite3_step, with the GIL released: bound value by
# value, the writer held the GIL for every one and kept taking it from the loop (the
# loop thread blocked ~500 times a second at saturation).
_MATCH_ROW = (
    "id", "player1", "name1", "bot1", "player2", "name2", "bot2", "winner", "reason",
    "best_of", "started_at", "ended_at",
)  # fmt: skip
_INSERT_MATCHES = f"INSERT INTO matches {_from_json(_MATCH_ROW)}"
_INSERT_ROUNDS = (
    f"INSERT INTO rounds {_from_json(('match_id', 'round', 'choice1', 'choice2', 'outcome'))}"
)


def _match_row(record: MatchRecord) -> tuple[Any, ...]:
    first, second = record.seats
    return (
        record.id,
        first.player_id,
        first.name,
        first.bot,
        second.player_id,
        second.name,
        second.bot,
        record.winner,
        record.reason,
        record.best_of,
        record.started_at,
        record.ended_at,
    )


Statements = list[tuple[str, tuple[bytes]]]


def match_statements(records: list[MatchRecord]) -> Statements:
    """The statements that store a run of finished matches: the matches, their rounds,
    and each human's profile and result, with the same effect as one match at a time."""
    rounds = [
        (record.id, r.round, r.choices[0], r.choices[1], r.outcome)
        for record in records
        for r in record.rounds
    ]
    profiles, results = _tally_players(records)
    return [
        (_INSERT_MATCHES, (orjson.dumps([_match_row(record) for record in records]),)),
        (_INSERT_ROUNDS, (orjson.dumps(rounds),)),
        (_RECORD_PROFILES, (orjson.dumps(profiles),)),
        (_ADD_RESULTS, (orjson.dumps(results),)),
    ]


def run_statements(conn: sqlite3.Connection, statements: Statements) -> None:
    for sql, params in statements:
        conn.execute(sql, params)


def insert_matches(conn: sqlite3.Connection, records: list[MatchRecord]) -> None:
    run_statements(conn, match_statements(records))


class _Tally:
    """One player's share of a run of matches: its latest profile and what to add."""

    __slots__ = ("drawn", "lost", "points", "profile", "reset", "streak", "won")

    def __init__(self, profile: PlayerRecord) -> None:
        self.profile = profile
        self.points = self.won = self.lost = self.drawn = 0
        self.reset = False  # a loss ends the stored streak ...
        self.streak = 0  # ... and these wins are added to it (or to 0 after a reset)

    def add(self, result: PlayerResult) -> None:
        self.points += result.points
        if result.outcome == "win":
            self.won += 1
            self.streak += 1
        elif result.outcome == "lose":
            self.lost += 1
            self.reset, self.streak = True, 0
        else:
            self.drawn += 1


# The players of a run of matches in two statements, whatever the run's length: a row is
# made for a player storage does not have yet (with its totals as they were before the
# run), every profile is brought up to date as _SAVE_PLAYER would, then the run's results
# are added. Same effect as the matches' upserts one by one, in order.
_RESULT_ROW = ("id", "points", "won", "lost", "drawn", "reset", "streak")


_RECORD_PROFILES = f"""
        WITH v AS ({_from_json(_PROFILE_ROW)})
        INSERT INTO players ({_PLAYER_COLUMNS})
        SELECT id, name, avatar,
            CASE WHEN EXISTS (SELECT 1 FROM players p WHERE p.openid = v.openid AND p.id <> v.id)
                THEN NULL ELSE openid END,
            unionid, total_score, win_streak, wins, losses, draws, created_at, last_seen
        FROM v WHERE true
        ON CONFLICT (id) DO UPDATE SET
            name = excluded.name, avatar = excluded.avatar,
            openid = coalesce(excluded.openid, openid),
            unionid = coalesce(excluded.unionid, unionid),
            last_seen = max(last_seen, excluded.last_seen)
    """


_ADD_RESULTS = f"""
        WITH v AS ({_from_json(_RESULT_ROW)})
        UPDATE players SET
            total_score = total_score + v.points,
            wins = wins + v.won, losses = losses + v.lost, draws = draws + v.drawn,
            win_streak = CASE WHEN v.reset THEN v.streak ELSE win_streak + v.streak END
        FROM v WHERE players.id = v.id
    """


def _tally_players(
    records: list[MatchRecord],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    tallies: dict[str, _Tally] = {}
    for record in records:
        outcomes = {result.player_id: result for result in record.results}
        for player in record.players:
            tally = tallies.get(player.id)
            if tally is None:
                tally = tallies[player.id] = _Tally(player)
            else:
                tally.profile = player
            result = outcomes.get(player.id)
            if result is not None:
                tally.add(result)
    profiles: list[tuple[Any, ...]] = []
    results: list[tuple[Any, ...]] = []
    for tally in tallies.values():
        p = tally.profile
        # A new row starts from the totals before the run, so that adding the run's
        # results below leaves it at the profile's own totals.
        streak = p.win_streak if tally.reset else p.win_streak - tally.streak
        profiles.append(
            (
                p.id,
                p.name,
                p.avatar,
                p.openid,
                p.unionid,
                p.total_score - tally.points,
                streak,
                p.wins - tally.won,
                p.losses - tally.lost,
                p.draws - tally.drawn,
                p.created_at,
                p.last_seen,
            )
        )
        results.append(
            (p.id, tally.points, tally.won, tally.lost, tally.drawn, tally.reset, tally.streak)
        )
    return profiles, results


def _player(row: sqlite3.Row | None) -> PlayerRecord | None:
    return None if row is None else PlayerRecord(**dict(row))


def _statements(script: str) -> list[str]:
    """A script's statements, one by one (``executescript`` would commit first)."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version it is at.

    Several processes may start on the same new file at once: each step reads the version
    inside a ``BEGIN IMMEDIATE`` transaction, under the write lock, so one process applies
    a step and the others find it done.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"database schema version {version} is newer than this server knows "
                    f"({len(MIGRATIONS)}); upgrade the server"
                )
            if version == len(MIGRATIONS):
                conn.execute("COMMIT")
                return len(MIGRATIONS)
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("schema_migrated", version=version + 1)


def _bulk_job(run: list[_Job]) -> _Job:
    """One write for a run of match writes, its statements made here, on the loop's thread."""
    statements = match_statements([job.match for job in run if job.match is not None])
    return _Job(lambda conn: run_statements(conn, statements), None, True, parts=run)


def _answer(future: Future[Any], result: Any, error: BaseException | None) -> None:
    """Settle a read's future; one cancelled meanwhile (its caller gave up) is left alone."""
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass


class _Job:
    __slots__ = ("fn", "future", "match", "parts", "write")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        future: Future[Any] | None,
        write: bool,
        match: MatchRecord | None = None,
        parts: list[_Job] | None = None,
    ) -> None:
        self.fn = fn
        self.future = future
        self.write = write
        self.match = match  # the finished match this write stores, if it is one
        # A run of match writes done as one (in bulk); a failed batch runs them one by one.
        self.parts = parts

    @property
    def writes(self) -> int:
        return len(self.parts) if self.parts else int(self.write)


_STOP = object()


class _WriteFailed(Exception):
    """A write failed on the fast path: the batch is run again, write by write."""


class SqliteStore:
    """The default store: one SQLite file (``:memory:`` for a throwaway one)."""

    def __init__(
        self,
        path: str,
        *,
        guest_ttl: float | None = None,
        backlog_max: int = BACKLOG_MAX,
        busy_timeout: float = BUSY_TIMEOUT,
        prune_batch: int = PRUNE_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``guest_ttl``: delete guests who never played, have no WeChat identity and were
        last seen longer ago than this (at start-up, then hourly): at least the token
        lifetime, since nobody can come back to them once their last token has expired.
        None keeps every player."""
        self.path = path
        self.guest_ttl = guest_ttl
        self.backlog_max = backlog_max
        self.busy_timeout = busy_timeout
        self.prune_batch = prune_batch
        self.clock = clock
        self.pruned = 0  # guests deleted so far
        self.failures = 0  # batches given up because their transaction failed
        self._lost = 0  # writes in those batches (counted on the writer thread)
        self._overflow = 0  # writes dropped because the backlog was full (the loop's thread)
        # Items: a read or claim (_Job), a list of writes handed over together, or _STOP.
        self._jobs: queue.SimpleQueue[_Job | list[_Job] | object] = queue.SimpleQueue()
        self._gathered: list[_Job] = []  # writes not handed over yet (the loop's thread)
        self._handoff: asyncio.TimerHandle | None = None
        self._submitted = 0  # jobs handed to the writer (counted on the loop's thread)
        self._taken = 0  # jobs the writer has taken up (counted on its thread)
        self.batches = 0  # transactions the writer has run (its wake-ups with work)
        self.restarts = 0  # RESTART checkpoints the log's length called for
        self._opened: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="sqlite-store", daemon=True)
        self._thread.start()
        self._opened.result()  # raise here if the file cannot be opened or migrated
        self._closed = False
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if path != ":memory:":
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    # ------------------------------------------------------------ the service's port

    def load_player(self, player_id: str, done: LoadDone) -> None:
        """Read a player and call ``done`` with it (or ``StoreUnavailable``) on the loop."""
        loop = asyncio.get_running_loop()
        future = self._submit(lambda conn: self._load(conn, player_id), write=False)

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
        params = _player_params(record)
        self._write(lambda conn: conn.execute(_SAVE_PLAYER, params))

    def record_match(self, record: MatchRecord) -> None:
        self._write(lambda conn: insert_matches(conn, [record]), match=record)

    # ------------------------------------------------------------ queries for the shell

    async def find_by_openid(self, openid: str) -> PlayerRecord | None:
        return await self._read(lambda conn: self._by_openid(conn, openid))

    async def claim_openid(self, record: PlayerRecord) -> PlayerRecord:
        """The player with ``record.openid``: the stored one, else ``record``, stored now.

        One transaction under the write lock, so when two processes log in the same new
        WeChat user at once, the first to insert makes the player and the other gets it.
        """
        params = _player_params(record)
        openid = record.openid

        def claim(conn: sqlite3.Connection) -> PlayerRecord:
            conn.execute(_INSERT_NEW_PLAYER, params)
            return self._by_openid(conn, openid) or record

        return await asyncio.wrap_future(self._submit(claim, write=True))

    async def get_player(self, player_id: str) -> PlayerRecord | None:
        return await self._read(lambda conn: self._load(conn, player_id))

    async def leaderboard(self, limit: int) -> list[PlayerRecord]:
        def query(conn: sqlite3.Connection) -> list[PlayerRecord]:
            rows = conn.execute(
                f"SELECT {_PLAYER_COLUMNS} FROM players WHERE wins + losses + draws > 0 "
                "ORDER BY total_score DESC, id LIMIT ?",
                (limit,),
            )
            return [PlayerRecord(**dict(row)) for row in rows]

        return await self._read(query)

    async def recent_matches(self, player_id: str, limit: int) -> list[dict[str, Any]]:
        def query(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            matches = conn.execute(
                "SELECT * FROM matches WHERE player1 = ? OR player2 = ? "
                "ORDER BY ended_at DESC LIMIT ?",
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

        return await self._read(query)

    @property
    def backlog(self) -> int:
        """Jobs waiting for the writer thread: steady near zero, or the disk cannot keep up."""
        return len(self._gathered) + self._submitted - self._taken

    @property
    def writes_dropped(self) -> int:
        """Writes lost: in failed batches, or refused because the backlog was full."""
        return self._lost + self._overflow

    async def flush(self) -> None:
        """Wait until everything written so far is committed."""
        await self._read(lambda conn: None)

    async def close(self) -> None:
        if self._closed:
            return
        self._hand_over()
        self._closed = True
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)

    # ------------------------------------------------------------ the thread

    def _submit(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> Future[T]:
        if self._closed:
            raise RuntimeError("the store is closed")
        self._hand_over()  # a read sees every write made before it
        future: Future[T] = Future()
        self._submitted += 1
        self._jobs.put(_Job(fn, future, write))
        return future

    def _write(
        self, fn: Callable[[sqlite3.Connection], Any], *, match: MatchRecord | None = None
    ) -> None:
        if self._closed:
            log.error("write_after_close")
            return
        if self.backlog >= self.backlog_max:
            # The writer is stuck (a broken or hopelessly slow disk): keep memory bounded.
            self._overflow += 1
            if self._overflow % 10_000 == 1:
                log.error("store_backlog_full", backlog=self.backlog_max, dropped=self._overflow)
            return
        gathered = self._gathered
        gathered.append(_Job(fn, None, True, match))
        if len(gathered) >= HANDOFF_MAX:
            self._hand_over()
        elif self._handoff is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called off the loop (a script, a test): no waiting
                self._hand_over()
            else:
                self._handoff = loop.call_later(HANDOFF_SECONDS, self._hand_over)

    def _hand_over(self) -> None:
        """Pass the gathered writes to the writer thread in one queue item."""
        if self._handoff is not None:
            self._handoff.cancel()
            self._handoff = None
        if not self._gathered:
            return
        gathered, self._gathered = self._gathered, []
        self._submitted += len(gathered)
        jobs: list[_Job] = []
        run: list[_Job] = []  # consecutive finished matches: one job, in bulk
        for job in gathered:
            if job.match is not None:
                run.append(job)
                continue
            if run:
                jobs.append(_bulk_job(run))
                run = []
            jobs.append(job)
        if run:
            jobs.append(_bulk_job(run))
        self._jobs.put(jobs)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._submit(fn, write=False))

    @staticmethod
    def _load(conn: sqlite3.Connection, player_id: str) -> PlayerRecord | None:
        return _player(
            conn.execute(
                f"SELECT {_PLAYER_COLUMNS} FROM players WHERE id = ?", (player_id,)
            ).fetchone()
        )

    @staticmethod
    def _by_openid(conn: sqlite3.Connection, openid: str | None) -> PlayerRecord | None:
        return _player(
            conn.execute(
                f"SELECT {_PLAYER_COLUMNS} FROM players WHERE openid = ?", (openid,)
            ).fetchone()
        )

    def _open(self) -> sqlite3.Connection:
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

    def _run(self) -> None:
        conn: sqlite3.Connection | None
        try:
            conn = self._open()
        except BaseException as exc:
            self._opened.set_exception(exc)
            return
        self._opened.set_result(None)
        stop = False
        next_prune = self.clock()  # at start-up
        while not stop:
            if self.guest_ttl is not None and conn is not None and self.clock() >= next_prune:
                next_prune = self._prune(conn, self.guest_ttl)
            timeout = None if self.guest_ttl is None else max(0.0, next_prune - self.clock())
            try:
                batch = [self._jobs.get(timeout=timeout)]
            except queue.Empty:
                continue
            while True:  # everything already waiting goes into this wake-up's batch
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            jobs: list[_Job] = []
            for item in batch:
                if isinstance(item, list):
                    jobs += item
                elif isinstance(item, _Job):
                    jobs.append(item)
                else:
                    stop = True  # the stop marker
            self._taken += sum(job.writes or 1 for job in jobs)
            try:
                if conn is None:
                    conn = self._open()
                self._run_batch(conn, jobs)
            except Exception as exc:
                conn = self._batch_failed(conn, jobs, exc)
                if not stop:
                    time.sleep(FAILURE_PAUSE)
        if conn is not None:
            conn.close()

    def _prune(self, conn: sqlite3.Connection, ttl: float) -> float:
        """Sweep one batch of unreachable guests; returns when to sweep next."""
        now = self.clock()
        try:
            deleted = prune_guests(conn, now - ttl, self.prune_batch)
        except sqlite3.Error:
            log.exception("guest_prune_failed")
            return now + PRUNE_EVERY
        self.pruned += deleted
        if deleted:
            log.info("guests_pruned", deleted=deleted, total=self.pruned)
        # A full batch: more are waiting, swept at the next turn, after whatever is queued.
        return now if deleted == self.prune_batch else now + PRUNE_EVERY

    def _batch_failed(
        self, conn: sqlite3.Connection | None, jobs: list[_Job], exc: Exception
    ) -> sqlite3.Connection | None:
        """Give up a batch whose transaction failed; the connection to go on with."""
        self.failures += 1
        lost = sum(job.writes for job in jobs)
        self._lost += lost
        log.error(
            "store_batch_failed",
            error=repr(exc),
            jobs=len(jobs),
            writes_lost=lost,
            failures=self.failures,
            exc_info=exc,
        )
        unavailable = StoreUnavailable(f"storage failed: {exc}")
        for job in jobs:
            if job.future is not None and not job.future.done():
                _answer(job.future, None, unavailable)
        if conn is None:
            return None
        # SQLite may have rolled back already (a full disk, an I/O error), or not (a failed
        # COMMIT leaves the transaction open).
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if self.path in (":memory:", ""):
            return conn  # a new connection would be a new, empty database
        # Start over on a fresh connection (opened with the next batch, so a file that
        # cannot be opened fails that batch too instead of ending the thread).
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        return None

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run one wake-up's jobs in one transaction; answer reads after the commit.

        The fast path has no savepoints. If a write fails, the transaction is rolled back
        and the batch runs again with a savepoint around each write, so only the failing
        write is lost. Reads are answered only after the commit, so ``flush`` means "on
        disk". Anything else that fails (BEGIN, COMMIT, a rollback) fails the batch.

        A batch with writes takes the write lock up front (``BEGIN IMMEDIATE``): with a
        deferred ``BEGIN``, a write after a read fails at once with "database is locked"
        once another process has committed since the read, busy timeout or not.
        """
        self.batches += 1
        begin = "BEGIN IMMEDIATE" if any(job.write for job in jobs) else "BEGIN"
        try:
            answers = self._apply(conn, jobs, begin, careful=False)
        except _WriteFailed:
            if conn.in_transaction:  # SQLite rolls back by itself after some errors
                conn.execute("ROLLBACK")
            answers = self._apply(conn, jobs, begin, careful=True)
        for future, result, error in answers:
            _answer(future, result, error)

    @staticmethod
    def _apply(
        conn: sqlite3.Connection, jobs: list[_Job], begin: str, *, careful: bool
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        answers: list[tuple[Future[Any], Any, BaseException | None]] = []
        if careful:  # a run of matches one by one, so only a failing match is lost
            jobs = [part for job in jobs for part in job.parts or (job,)]
        conn.execute(begin)
        for job in jobs:
            guarded = careful and job.write
            if guarded:
                conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if job.write and not careful:
                    raise _WriteFailed from exc
                if guarded:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    log.exception("store_write_failed")
                if job.future is not None:
                    answers.append((job.future, None, exc))
                continue
            if guarded:
                conn.execute("RELEASE job")
            if job.future is not None:
                answers.append((job.future, result, None))
        conn.execute("COMMIT")
        return answers
