"""The shared store: players and finished matches in PostgreSQL, for several nodes at once.

``--db postgresql://user@host:port/dbname`` (or ``postgres://``) opens it; every node of
a cluster points at the same database, and a player's totals, the leaderboard and the
matches are the same from each of them.

Why psycopg 3, synchronously, rather than asyncpg: the store already has a design that
keeps the event loop free, the writer thread (``store/writer.py``), with its batching,
failure and backlog rules, and SQLite uses it. With psycopg the PostgreSQL store runs on
that same thread under the same rules (one ``ThreadedStore``, ``store/base.py``), so both
engines fail, recover and count alike, and the loop never touches the database. libpq
does its network I/O with the GIL released, so the thread's waits cost the loop nothing,
and psycopg prepares a statement run often on the server by itself. asyncpg would have
put the database on the loop itself, a second set of batching and failure rules beside
SQLite's, for round trips the thread already hides.

One connection per node (its writer thread). A batch of jobs is one transaction; a run
of finished matches is a few statements each reading its rows from one JSON parameter
(``store/batching.py``), with each match counted once (``ON CONFLICT DO NOTHING
RETURNING id``). Players' rows are locked in id order before they are updated, so two
nodes lock the rows they share in the same order. That is not enough on its own: a batch
is several statements (new players, then every player's totals, then the periods' points,
and profiles saved beside a run), and two nodes' batches could still each hold a row the
other's next statement wants. PostgreSQL breaks such a deadlock only after its
``deadlock_timeout`` (a second), by failing one batch, whose careful retry write by write
could meet the next node's batch the same way (a three-node soak lost writes so, and a node
then took longer to stop than its supervisor waits). So a write transaction begins by
taking one transaction-scoped advisory lock (``WRITE_LOCK``), the same in every node: the
nodes' write batches take turns, and no two of them ever hold rows at once. Reads take no
lock. A batch holds it for a few round trips (a run of 20 matches: a millisecond or two on
one machine), so a cluster stores on the order of 10,000 matches a second before writers
queue for it; batches then grow, and there are fewer of them (docs/storage.md).

A lost connection (the server restarted, a network cut) fails the batch it happened in:
its reads raise ``StoreUnavailable`` and its writes are counted as lost. The next batch
connects again. TCP keepalives notice a silently dead peer; anything in the URL
(``?connect_timeout=2``, ``?keepalives_idle=10``, ``?sslmode=require``) overrides the
defaults below.

Migrations are recorded in ``rps_schema_migrations`` and run under an advisory lock, so
when several nodes start on a new database at once, one makes the schema and the others
find it made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import structlog
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from game_server.core.records import Picture, PlayerRecord
from game_server.store.base import PRUNE_BATCH, ThreadedStore
from game_server.store.batching import MATCH_ROW, RunSql
from game_server.store.schema import PLAYER_COLUMNS, PROFILE_ROW, player_from_row
from game_server.store.writer import BACKLOG_MAX

log = structlog.get_logger("game_server.store")

# Connection settings a URL may override: fail fast when the server cannot be reached,
# and notice a dead peer within about a minute instead of TCP's two hours.
CONNECT_DEFAULTS: dict[str, str] = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "application_name": "rps-server",
}

# Any number: the key of the advisory lock migrations run under (the same in every node).
MIGRATION_LOCK = 0x5250_5301
# The key of the transaction-scoped advisory lock every write batch takes first, so the
# nodes' write transactions take turns and never deadlock (above).
WRITE_LOCK = 0x5250_5302
# A write transaction's start and its lock in one round trip (a query without parameters
# goes as one simple query, several statements allowed).
BEGIN_WRITE = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})".encode()

# Each entry moves the schema from version N to N + 1; one that has shipped is never
# edited. The same tables and columns as SQLite's (store/schema.py). Ids compare byte by
# byte (COLLATE "C"), so leaderboard ties come out in the order SQLite gives them.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE players (
        id text COLLATE "C" PRIMARY KEY,
        name text NOT NULL,
        avatar text,
        openid text UNIQUE,
        unionid text,
        total_score bigint NOT NULL DEFAULT 0,
        win_streak bigint NOT NULL DEFAULT 0,
        wins bigint NOT NULL DEFAULT 0,
        losses bigint NOT NULL DEFAULT 0,
        draws bigint NOT NULL DEFAULT 0,
        created_at double precision NOT NULL,
        last_seen double precision NOT NULL
    );
    -- The leaderboard reads only players who played, best first.
    CREATE INDEX players_by_score ON players (total_score DESC, id)
        WHERE wins + losses + draws > 0;
    -- Guests who never played and have no WeChat identity, by age, for the sweep.
    CREATE INDEX players_idle_guests ON players (last_seen)
        WHERE openid IS NULL AND wins + losses + draws = 0;
    CREATE TABLE matches (
        id text COLLATE "C" PRIMARY KEY,
        player1 text COLLATE "C" NOT NULL,
        name1 text NOT NULL,
        bot1 integer NOT NULL,
        player2 text COLLATE "C" NOT NULL,
        name2 text NOT NULL,
        bot2 integer NOT NULL,
        winner text COLLATE "C",
        reason text NOT NULL,
        best_of integer NOT NULL,
        started_at double precision NOT NULL,
        ended_at double precision NOT NULL
    );
    CREATE INDEX matches_by_player1 ON matches (player1, ended_at DESC, id DESC);
    CREATE INDEX matches_by_player2 ON matches (player2, ended_at DESC, id DESC);
    CREATE TABLE rounds (
        match_id text COLLATE "C" NOT NULL REFERENCES matches (id),
        round integer NOT NULL,
        choice1 text,
        choice2 text,
        outcome text NOT NULL,
        PRIMARY KEY (match_id, round)
    );
    """,
    # 2: uploaded avatars (POST /applet/avatar), as SQLite's third step.
    """
    CREATE TABLE avatars (
        id text COLLATE "C" PRIMARY KEY,
        content_type text NOT NULL,
        data bytea NOT NULL,
        uploaded_by text COLLATE "C" NOT NULL,
        created_at double precision NOT NULL
    );
    """,
    # 3: Glicko-2 ratings (as SQLite's step 4). Players stored before ratings start as new
    # players do; their matches keep no rating (NULL), later ones each seat's before and
    # after.
    """
    ALTER TABLE players
        ADD COLUMN rating double precision NOT NULL DEFAULT 1500,
        ADD COLUMN rating_deviation double precision NOT NULL DEFAULT 350,
        ADD COLUMN rating_volatility double precision NOT NULL DEFAULT 0.06,
        ADD COLUMN rated_at double precision;
    ALTER TABLE matches
        ADD COLUMN rating1_before double precision,
        ADD COLUMN rating1_after double precision,
        ADD COLUMN rating2_before double precision,
        ADD COLUMN rating2_after double precision;
    """,
    # 4: leaderboards (as SQLite's step 5): points won per UTC+8 day and ISO week, and the
    # board of players who played by rating (the one by score has its index since step 1).
    """
    CREATE TABLE period_scores (
        period text COLLATE "C" NOT NULL,
        player_id text COLLATE "C" NOT NULL,
        points bigint NOT NULL,
        PRIMARY KEY (period, player_id)
    );
    CREATE INDEX period_scores_by_points ON period_scores (period, points DESC, player_id);
    CREATE INDEX players_by_rating ON players (rating DESC, id)
        WHERE wins + losses + draws > 0;
    """,
    # 5 (as SQLite's step 6): matches by age, for the sweep of old ones (--keep-matches).
    """
    CREATE INDEX matches_by_end ON matches (ended_at, id);
    """,
)

# The PostgreSQL type of each column a JSON row carries (text where not named).
_TYPES = {
    "bot1": "integer",
    "bot2": "integer",
    "best_of": "integer",
    "round": "integer",
    "started_at": "double precision",
    "ended_at": "double precision",
    "created_at": "double precision",
    "last_seen": "double precision",
    "total_score": "bigint",
    "win_streak": "bigint",
    "wins": "bigint",
    "losses": "bigint",
    "draws": "bigint",
    "points": "bigint",
    "won": "bigint",
    "lost": "bigint",
    "drawn": "bigint",
    "streak": "bigint",
    "reset": "boolean",
    "rating": "double precision",
    "rating_deviation": "double precision",
    "rating_volatility": "double precision",
    "rated_at": "double precision",
    "rating1_before": "double precision",
    "rating1_after": "double precision",
    "rating2_before": "double precision",
    "rating2_after": "double precision",
}


def _from_json(columns: tuple[str, ...]) -> str:
    """A table of ``columns`` from one parameter: a JSON array of rows (arrays).

    As ``jsonb``, parsed once: on the ``json`` type each ``->>`` parses its row again,
    which made a run's statements cost PostgreSQL half as much again."""
    picks = ", ".join(
        f"(value ->> {index})::{_TYPES.get(name, 'text')} AS {name}"
        for index, name in enumerate(columns)
    )
    return f"SELECT {picks} FROM jsonb_array_elements(%s::jsonb) AS rows (value)"


_UPDATE_PROFILE = """
    name = excluded.name, avatar = excluded.avatar,
    openid = coalesce(excluded.openid, players.openid),
    unionid = coalesce(excluded.unionid, players.unionid),
    last_seen = greatest(players.last_seen, excluded.last_seen)
"""

RUN_SQL = RunSql.build(
    _from_json,
    matches_tail="",
    rows_tail="ORDER BY id",
    latest="greatest",
    lock_in_order=True,
    periods_tail="ORDER BY period, player_id",
    encode=bytes.decode,  # text: psycopg would send bytes as bytea
)

# A player's profile; its totals go only into a new row (store/sqlite.py says why).
SAVE_PLAYER = f"""
    INSERT INTO players ({PLAYER_COLUMNS})
    SELECT %(id)s, %(name)s, %(avatar)s,
        CASE WHEN EXISTS (SELECT 1 FROM players WHERE openid = %(openid)s AND id <> %(id)s)
            THEN NULL ELSE %(openid)s::text END,
        %(unionid)s, %(total_score)s, %(win_streak)s, %(wins)s, %(losses)s, %(draws)s,
        %(created_at)s, %(last_seen)s,
        %(rating)s, %(rating_deviation)s, %(rating_volatility)s, %(rated_at)s
    ON CONFLICT (id) DO UPDATE SET {_UPDATE_PROFILE}
"""
_INSERT_NEW_PLAYER = f"""
    INSERT INTO players ({PLAYER_COLUMNS})
    VALUES ({", ".join(f"%({column})s" for column in PROFILE_ROW)})
    ON CONFLICT DO NOTHING
"""
_SELECT_PLAYER = f"SELECT {PLAYER_COLUMNS} FROM players"


def connection_string(url: str) -> str:
    """The libpq connection string for ``url``: the defaults, overridden by the URL."""
    return make_conninfo("", **{**CONNECT_DEFAULTS, **conninfo_to_dict(url)})


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema up to date (``conn`` in autocommit); returns its version.

    Under a session advisory lock, so nodes starting on a new database at once take turns:
    the first applies each step (in a transaction with its record), the others find it
    applied.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS rps_schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM rps_schema_migrations").fetchone()
        version: int = row[0] if row is not None else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {version} is newer than this server knows "
                f"({len(MIGRATIONS)}); upgrade the server"
            )
        while version < len(MIGRATIONS):
            with conn.transaction():
                conn.execute(MIGRATIONS[version])
                conn.execute(
                    "INSERT INTO rps_schema_migrations (version) VALUES (%s)", (version + 1,)
                )
            version += 1
            log.info("schema_migrated", version=version, engine="postgresql")
        return version
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def prune_guests(conn: psycopg.Connection[Any], before: float, limit: int) -> int:
    """Delete up to ``limit`` guests nobody can reach again (no WeChat identity, no game
    played, last seen before ``before``) in a transaction of its own. Rows another node is
    sweeping (or writing) right now are skipped rather than waited for."""
    with conn.transaction():
        cursor = conn.execute(
            "DELETE FROM players WHERE id IN (SELECT id FROM players "
            "WHERE openid IS NULL AND wins + losses + draws = 0 AND last_seen < %s "
            "LIMIT %s FOR UPDATE SKIP LOCKED)",
            (before, limit),
        )
        return cursor.rowcount


def prune_matches(conn: psycopg.Connection[Any], before: float, limit: int) -> int:
    """Delete up to ``limit`` of the oldest matches that ended before ``before``, and their
    rounds, in a transaction of its own; matches another node is sweeping right now are
    skipped rather than waited for."""
    with conn.transaction():
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM matches WHERE ended_at < %s ORDER BY ended_at, id "
                "LIMIT %s FOR UPDATE SKIP LOCKED",
                (before, limit),
            ).fetchall()
        ]
        if not ids:
            return 0
        conn.execute("DELETE FROM rounds WHERE match_id = ANY(%s)", (ids,))
        return conn.execute("DELETE FROM matches WHERE id = ANY(%s)", (ids,)).rowcount


def prune_periods(conn: psycopg.Connection[Any], low: str, high: str, limit: int) -> int:
    """Delete up to ``limit`` leaderboard rows whose period key is in ``low <= key < high``
    (``core/ladder.periods_before``; keys compare in byte order), skipping rows another
    node holds."""
    with conn.transaction():
        return conn.execute(
            "DELETE FROM period_scores WHERE (period, player_id) IN ("
            "SELECT period, player_id FROM period_scores "
            "WHERE period >= %s AND period < %s LIMIT %s FOR UPDATE SKIP LOCKED)",
            (low, high, limit),
        ).rowcount


class PostgresDatabase:
    """How the writer opens and drives PostgreSQL (see ``store.writer.Database``)."""

    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        self.conninfo = connection_string(url)

    @property
    def reconnect_after_failure(self) -> bool:
        return True

    @property
    def failure_aborts_transaction(self) -> bool:
        return True  # after any error, PostgreSQL refuses the rest of the transaction

    def connect(self) -> psycopg.Connection[Any]:
        # Autocommit: the writer says BEGIN and COMMIT itself, as with SQLite.
        conn = psycopg.connect(self.conninfo, autocommit=True)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self, conn: psycopg.Connection[Any], *, write: bool) -> None:
        # The lock is released by the COMMIT or ROLLBACK that ends the transaction.
        conn.execute(BEGIN_WRITE if write else b"BEGIN")

    def execute(self, conn: psycopg.Connection[Any], sql: str) -> None:
        conn.execute(sql.encode())

    def in_transaction(self, conn: psycopg.Connection[Any]) -> bool:
        # UNKNOWN (a broken connection) counts: its ROLLBACK fails and so does the batch.
        return conn.info.transaction_status != pq.TransactionStatus.IDLE

    def close(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()


class PostgresStore(ThreadedStore[psycopg.Connection[Any]]):
    """Players and matches in a PostgreSQL database several nodes may share."""

    run_sql = RUN_SQL
    mark = "%s"

    def __init__(
        self,
        url: str,
        *,
        guest_ttl: float | None = None,
        keep_matches: float | None = None,
        backlog_max: int = BACKLOG_MAX,
        prune_batch: int = PRUNE_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Connects (and migrates) before it returns; raises if the database cannot be
        reached. ``guest_ttl``, ``keep_matches``: see ``ThreadedStore``."""
        self.url = url
        super().__init__(
            PostgresDatabase(url),
            name="postgres-store",
            guest_ttl=guest_ttl,
            keep_matches=keep_matches,
            backlog_max=backlog_max,
            prune_batch=prune_batch,
            clock=clock,
        )

    # ------------------------------------------------------------ SQL, on the writer thread

    def _save(self, conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
        conn.execute(SAVE_PLAYER, params)

    def _insert_new(self, conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
        conn.execute(_INSERT_NEW_PLAYER, params)

    @staticmethod
    def _one(conn: psycopg.Connection[Any], sql: str, param: Any) -> PlayerRecord | None:
        with conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(sql.encode(), (param,)).fetchone()
        return None if row is None else player_from_row(row)

    def _load(self, conn: psycopg.Connection[Any], player_id: str) -> PlayerRecord | None:
        return self._one(conn, f"{_SELECT_PLAYER} WHERE id = %s", player_id)

    def _by_openid(self, conn: psycopg.Connection[Any], openid: str | None) -> PlayerRecord | None:
        return self._one(conn, f"{_SELECT_PLAYER} WHERE openid = %s", openid)

    def _leaderboard(self, conn: psycopg.Connection[Any], limit: int) -> list[PlayerRecord]:
        with conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                f"{_SELECT_PLAYER} WHERE wins + losses + draws > 0 "
                "ORDER BY total_score DESC, id LIMIT %s",
                (limit,),
            ).fetchall()
        return [player_from_row(row) for row in rows]

    def _recent_matches(
        self, conn: psycopg.Connection[Any], player_id: str, limit: int
    ) -> list[dict[str, Any]]:
        with conn.cursor(row_factory=dict_row) as cursor:
            # Two index scans (one per seat) merged, rather than a scan of every match.
            matches = cursor.execute(
                f"SELECT {', '.join(MATCH_ROW)} FROM ("
                f"(SELECT * FROM matches WHERE player1 = %(p)s "
                "ORDER BY ended_at DESC, id DESC LIMIT %(n)s) UNION "
                f"(SELECT * FROM matches WHERE player2 = %(p)s "
                "ORDER BY ended_at DESC, id DESC LIMIT %(n)s)) AS m "
                "ORDER BY ended_at DESC, id DESC LIMIT %(n)s",
                {"p": player_id, "n": limit},
            ).fetchall()
            if not matches:
                return []
            rounds = cursor.execute(
                "SELECT match_id, round, choice1, choice2, outcome FROM rounds "
                "WHERE match_id = ANY(%s) ORDER BY match_id, round",
                ([match["id"] for match in matches],),
            ).fetchall()
        by_match: dict[str, list[dict[str, Any]]] = {match["id"]: [] for match in matches}
        for row in rounds:
            by_match[row.pop("match_id")].append(row)
        return [{**match, "rounds": by_match[match["id"]]} for match in matches]

    def _rating_history(
        self, conn: psycopg.Connection[Any], player_id: str, limit: int
    ) -> list[tuple[str, float, float]]:
        # As recent matches: an index scan per seat, merged.
        rows = conn.execute(
            "SELECT id, ended_at, mine FROM ("
            "(SELECT id, ended_at, rating1_after AS mine FROM matches WHERE player1 = %(p)s "
            "ORDER BY ended_at DESC, id DESC LIMIT %(n)s) UNION ALL "
            "(SELECT id, ended_at, rating2_after FROM matches WHERE player2 = %(p)s "
            "ORDER BY ended_at DESC, id DESC LIMIT %(n)s)) AS m "
            "ORDER BY ended_at DESC, id DESC LIMIT %(n)s",
            {"p": player_id, "n": limit},
        ).fetchall()
        return [(row[0], row[1], row[2]) for row in rows if row[2] is not None]

    def _query(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]
    ) -> list[Mapping[str, Any]]:
        with conn.cursor(row_factory=dict_row) as cursor:
            return list(cursor.execute(sql.encode(), tuple(params)).fetchall())

    def _prune_guests(self, conn: psycopg.Connection[Any], before: float, limit: int) -> int:
        return prune_guests(conn, before, limit)

    def _prune_matches(self, conn: psycopg.Connection[Any], before: float, limit: int) -> int:
        return prune_matches(conn, before, limit)

    def _prune_periods(self, conn: psycopg.Connection[Any], low: str, high: str, limit: int) -> int:
        return prune_periods(conn, low, high, limit)

    def _insert_picture(self, conn: psycopg.Connection[Any], picture: Picture) -> None:
        conn.execute(
            "INSERT INTO avatars (id, content_type, data, uploaded_by, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                picture.id,
                picture.content_type,
                picture.data,
                picture.uploaded_by,
                picture.created_at,
            ),
        )

    def _set_avatar(self, conn: psycopg.Connection[Any], player_id: str, url: str) -> bool:
        cursor = conn.execute("UPDATE players SET avatar = %s WHERE id = %s", (url, player_id))
        return cursor.rowcount > 0

    def _load_picture(self, conn: psycopg.Connection[Any], picture_id: str) -> Picture | None:
        with conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(
                "SELECT id, content_type, data, uploaded_by, created_at FROM avatars WHERE id = %s",
                (picture_id,),
            ).fetchone()
        return None if row is None else Picture(**row)
