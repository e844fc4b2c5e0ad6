"""Cluster nodes in one event loop, on a real redis-server: each a game service with its
``Cluster``, clients as recording outlets. The processes-and-sockets version of the same
is in tests/system/test_cluster_processes.py."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from game_server.cluster.node import Cluster
from game_server.core.match import MatchRules
from game_server.core.ports import Storage
from game_server.core.service import GameService, ServiceConfig
from game_server.core.tokens import TokenSigner
from game_server.net.ticker import Ticker
from game_server.store.sqlite import SqliteStore
from tests.support.redis import RedisServer
from tests.support.service import Client, connect

SECRET = b"a cluster's shared token secret"
RULES = MatchRules(best_of=3, round_seconds=2.0, round_pause=0.0)
_prefixes = itertools.count()


@attrs.define
class Node:
    cluster: Cluster
    service: GameService
    ticker: Ticker
    storage: Storage

    crashed: bool = False

    def client(self) -> Client:
        return connect(self.service)

    async def crash(self) -> None:
        """Die as a killed process does: no goodbye in Redis, nothing driven any more."""
        self.crashed = True
        self.ticker.stop()
        cluster = self.cluster
        for task in cluster._tasks:
            task.cancel()
        await cluster.mailbox.close()
        await cluster.link.kill()

    async def close(self) -> None:
        if not self.crashed:
            self.ticker.stop()
            await self.cluster.close()
        await self.storage.close()


NodeFactory = Callable[..., "asyncio.Future[Node]"]


@pytest.fixture
async def nodes(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await nodes(name, storage=None, **service_config)``: a node of one cluster (a
    fresh key prefix per test, so tests never see each other's keys), storing in one
    SQLite file shared by the test's nodes unless given a ``storage`` of its own."""
    prefix = f"test{next(_prefixes)}-{random.getrandbits(32):x}:"
    made: list[Node] = []
    database = str(tmp_path / "cluster.db")

    async def make(name: str, storage: Storage | None = None, **overrides: Any) -> Node:
        loop = asyncio.get_running_loop()
        config = ServiceConfig(
            **{"rules": RULES, "bot_after": 60.0, "bot_think": (0.0, 0.0), **overrides}
        )
        # Heartbeats every 0.1 s, dead after 0.6 s of silence: takeovers within a second.
        cluster = Cluster(
            redis_server.url, node_id=name, prefix=prefix, heartbeat=0.1, node_ttl=0.6
        )
        await cluster.start()
        store: Storage = (
            storage if storage is not None else await asyncio.to_thread(SqliteStore, database)
        )
        service = GameService(
            config,
            loop.time,
            store=store,
            signer=TokenSigner(SECRET, 3600),
            rng=random.Random(name),
            **cluster.service_options(config, loop.time),
        )
        cluster.attach(service, store)
        node = Node(cluster, service, Ticker(service, loop), store)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close()
