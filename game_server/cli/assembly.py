"""The composition root: which store, which app, for one server process.

The network shell and storage never import each other; this module is where they meet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from aiohttp import web

from game_server.config import ServerConfig
from game_server.core.ports import Storage
from game_server.net import app as net_app
from game_server.store.sqlite import SqliteStore

# Guests who never played are swept once their last token has surely expired (an hour's
# slack for clocks that differ between processes).
GUEST_SLACK = 3600.0
DAY = 86400.0  # seconds (--keep-matches is in days)
# A --db starting with one of these is a PostgreSQL URL; anything else is a SQLite file.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_store(config: ServerConfig) -> Storage:
    """The store ``config.db`` names, opened (and migrated) off the event loop: PostgreSQL
    for a postgresql:// URL, else a SQLite file."""
    guest_ttl = config.token_ttl + GUEST_SLACK
    days = config.keep_matches_days
    keep_matches = None if days is None else days * DAY
    if config.db.startswith(POSTGRES_SCHEMES):
        # Imported only here: a process on SQLite never loads psycopg.
        from game_server.store.postgres import PostgresStore

        return await asyncio.to_thread(
            partial(PostgresStore, config.db, guest_ttl=guest_ttl, keep_matches=keep_matches)
        )
    return await asyncio.to_thread(
        partial(SqliteStore, config.db, guest_ttl=guest_ttl, keep_matches=keep_matches)
    )


def create_app(
    config: ServerConfig | None = None, *, clock: Callable[[], float] | None = None
) -> web.Application:
    """The whole server's app for ``config`` (the defaults: an in-memory database, one
    process on its own)."""
    config = config or ServerConfig()
    plugin = None
    if config.redis is not None:
        # Imported only here: without --redis, a process never loads the cluster code.
        from game_server.cluster.node import Cluster

        plugin = Cluster(
            config.redis,
            node_id=config.node_id,
            heartbeat=config.node_ttl / 4,
            node_ttl=config.node_ttl,
        )
    return net_app.create_app(
        config, open_store=partial(open_store, config), plugin=plugin, clock=clock
    )
