"""The SQLite schema, its migrations, and players as rows.

The schema is versioned with ``PRAGMA user_version``: each entry of ``MIGRATIONS`` moves
it from version N to N + 1, and one that has shipped is never edited. Several processes
may open a new file at once; every step runs under the write lock, so one of them applies
it and the others find it done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import attrs
import structlog

from game_server.core.rating import Rating
from game_server.core.records import PlayerRecord
from game_server.core.scoring import STAT_FIELDS, PlayerStats

log = structlog.get_logger("game_server.store")

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
    # 3: uploaded avatars (POST /applet/avatar), re-encoded, named by a hash of their
    # bytes: every node serves them, and the same picture is kept once.
    """
    CREATE TABLE avatars (
        id TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        data BLOB NOT NULL,
        uploaded_by TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 4: Glicko-2 ratings. Players stored before ratings start as new players do; their
    # matches keep no rating (NULL), later ones each seat's before and after.
    """
    ALTER TABLE players ADD COLUMN rating REAL NOT NULL DEFAULT 1500;
    ALTER TABLE players ADD COLUMN rating_deviation REAL NOT NULL DEFAULT 350;
    ALTER TABLE players ADD COLUMN rating_volatility REAL NOT NULL DEFAULT 0.06;
    ALTER TABLE players ADD COLUMN rated_at REAL;
    ALTER TABLE matches ADD COLUMN rating1_before REAL;
    ALTER TABLE matches ADD COLUMN rating1_after REAL;
    ALTER TABLE matches ADD COLUMN rating2_before REAL;
    ALTER TABLE matches ADD COLUMN rating2_after REAL;
    """,
    # 5: leaderboards. Points won per UTC+8 day and ISO week (the keys of core/ladder.py),
    # kept as matches are stored (a database from before starts them empty); the all-time
    # boards of players who played, by score and by rating, read from an index each.
    """
    CREATE TABLE period_scores (
        period TEXT NOT NULL,
        player_id TEXT NOT NULL,
        points INTEGER NOT NULL,
        PRIMARY KEY (period, player_id)
    ) WITHOUT ROWID;
    CREATE INDEX period_scores_by_points ON period_scores (period, points DESC, player_id);
    CREATE INDEX players_played_by_score ON players (total_score DESC, id)
        WHERE wins + losses + draws > 0;
    CREATE INDEX players_played_by_rating ON players (rating DESC, id)
        WHERE wins + losses + draws > 0;
    """,
    # 6: matches by age, for the sweep of old ones (--keep-matches).
    """
    CREATE INDEX matches_by_end ON matches (ended_at, id);
    """,
)

# A players row, in column order: the SELECTs, the profile rows of a run of matches and
# the named parameters of a new row all follow it.
RATING_COLUMNS = ("rating", "rating_deviation", "rating_volatility", "rated_at")
PROFILE_ROW: tuple[str, ...] = (
    "id", "name", "avatar", "openid", "unionid", *STAT_FIELDS, "created_at", "last_seen",
    *RATING_COLUMNS,
)  # fmt: skip
PLAYER_COLUMNS = ", ".join(PROFILE_ROW)


def player_params(record: PlayerRecord) -> dict[str, Any]:
    """A player as the named parameters of a players row."""
    return {
        "id": record.id,
        "name": record.name,
        "avatar": record.avatar,
        "openid": record.openid,
        "unionid": record.unionid,
        **attrs.asdict(record.stats),
        "created_at": record.created_at,
        "last_seen": record.last_seen,
        **dict(zip(RATING_COLUMNS, record.rating.to_json(), strict=True)),
    }


def player_from_row(row: Mapping[str, Any]) -> PlayerRecord:
    return PlayerRecord(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        last_seen=row["last_seen"],
        avatar=row["avatar"],
        openid=row["openid"],
        unionid=row["unionid"],
        stats=PlayerStats(**{name: row[name] for name in STAT_FIELDS}),
        rating=Rating(
            row["rating"], row["rating_deviation"], row["rating_volatility"], row["rated_at"]
        ),
    )


def split_script(script: str) -> list[str]:
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
            for statement in split_script(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("schema_migrated", version=version + 1)
