"""What the tests share: real servers on 127.0.0.1, an HTTP client, and the markers.

Every test under ``tests/system`` (real processes, nginx, pm2, browsers, databases) is
marked ``system``; ``python3 dev.py test --fast`` leaves those out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.core.match import MatchRules
from game_server.core.service import ServiceConfig
from game_server.net.app import runner_options
from tests.support.postgres import PostgresServer, postgres_session
from tests.support.redis import RedisServer, start_redis

ServerFactory = Callable[..., Awaitable[TestServer]]

# Short rounds and pauses: whole matches in a fraction of a second.
FAST = MatchRules(best_of=3, round_seconds=2.0, round_pause=0.05)
SYSTEM = Path(__file__).parent / "system"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "system: runs real programs (server processes, nginx, pm2, browsers...)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SYSTEM in item.path.parents:
            item.add_marker(pytest.mark.system)


@pytest.fixture
async def start_server(aiohttp_server: ServerFactory) -> ServerFactory:
    """``await start_server(server_options, **service_options)``: the whole app on a free
    port of 127.0.0.1, with ``FAST`` rules unless ``rules=`` says otherwise."""

    async def start(server: dict[str, Any] | None = None, **service: Any) -> TestServer:
        rules = service.pop("rules", FAST)
        config = ServerConfig(service=ServiceConfig(rules=rules, **service), **(server or {}))
        return await aiohttp_server(create_app(config), host="127.0.0.1", **runner_options(config))

    return start


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run (tests flush it or use their own prefix)."""
    yield from start_redis()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole run; each test takes a database of its own."""
    yield from postgres_session()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's PostgreSQL."""
    return postgres_server.fresh_database()
