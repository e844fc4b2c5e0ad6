"""The JSON endpoints in process (aiohttp's test server), where storage can be made to fail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from game_server.app import ServerConfig, create_app
from game_server.appkeys import STORE
from game_server.ports import StoreUnavailable

ServerFactory = Callable[..., Any]


async def broken(*args: Any) -> Any:
    raise StoreUnavailable("disk I/O error")


@pytest.mark.parametrize(
    ("path", "method"),
    [("/applet/leaderboard", "leaderboard"), ("/applet/players/p_1", "get_player")],
)
async def test_a_failing_store_answers_503_in_the_json_shape(
    aiohttp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch, path: str, method: str
) -> None:
    server: TestServer = await aiohttp_server(create_app(ServerConfig()), host="127.0.0.1")
    monkeypatch.setattr(server.app[STORE], method, broken)
    async with aiohttp.ClientSession() as http, http.get(server.make_url(path)) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        body = await response.json()
    assert body["error"]["code"] == "unavailable"


async def test_the_store_sweeps_guests_once_their_tokens_expired(
    aiohttp_server: ServerFactory,
) -> None:
    config = ServerConfig(token_ttl=600.0)
    server: TestServer = await aiohttp_server(create_app(config), host="127.0.0.1")
    assert server.app[STORE].guest_ttl == 600.0 + 3600.0  # an hour's slack for clocks
