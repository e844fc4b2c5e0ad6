"""The JSON endpoints in process (aiohttp's test server), where storage can be made to fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestServer

from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.core.ports import StoreUnavailable
from game_server.core.rating import Rating
from game_server.core.service import ServiceConfig
from game_server.net import app as app_module
from game_server.net.appkeys import SERVICE, STORE
from game_server.wechat.client import WeChatConfig
from tests.store.test_shared import player, won
from tests.support.fake_wechat import FakeWeChat

ServerFactory = Callable[..., Any]


async def broken(*args: Any) -> Any:
    raise StoreUnavailable("disk I/O error")


@pytest.mark.parametrize(
    ("path", "method"),
    [("/applet/leaderboard", "standings"), ("/applet/players/p_1", "get_player")],
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


async def test_old_history_is_swept_as_configured_and_the_sweeps_counted(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    kept: TestServer = await aiohttp_server(create_app(ServerConfig()), host="127.0.0.1")
    assert kept.app[STORE].keep_matches is None
    config = ServerConfig(db=str(tmp_path / "rps.db"), keep_matches_days=30)
    server: TestServer = await aiohttp_server(create_app(config), host="127.0.0.1")
    store = server.app[STORE]
    assert store.keep_matches == 30 * 86400.0
    store.pruned, store.matches_pruned, store.periods_pruned = 1, 3, 5
    async with aiohttp.ClientSession() as http, http.get(server.make_url("/metrics")) as response:
        metrics = await response.text()
    assert 'rps_store_swept_total{kind="guests"} 1.0' in metrics
    assert 'rps_store_swept_total{kind="matches"} 3.0' in metrics
    assert 'rps_store_swept_total{kind="period_rows"} 5.0' in metrics


async def test_a_login_on_an_idle_server_arms_the_loop_timer(
    aiohttp_server: ServerFactory,
) -> None:
    # Nothing else happens on this server: only the login's own timer (forget the player
    # if it never connects) can wake the service, so the player going away shows it fired.
    fake = FakeWeChat()
    wechat: TestServer = await aiohttp_server(fake.make_app(), host="127.0.0.1")
    config = ServerConfig(
        service=ServiceConfig(forget_after=0.2),
        wechat=WeChatConfig(
            appid="wxTEST", secret="s", api_base=str(wechat.make_url("")).rstrip("/")
        ),
    )
    server: TestServer = await aiohttp_server(create_app(config), host="127.0.0.1")
    fake.succeed("code-1", "openid-1")
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.make_url("/applet/login"), json={"code": "code-1"}) as response,
    ):
        assert response.status == 200
        player_id = (await response.json())["player"]["id"]
    service = server.app[SERVICE]
    assert player_id in service.roster.by_id
    for _ in range(100):
        if player_id not in service.roster.by_id:
            break
        await asyncio.sleep(0.05)
    assert player_id not in service.roster.by_id
    assert service.timers.pending == 0


@pytest.mark.parametrize(
    ("db", "secret", "warned"),
    [
        ("rps.db", None, True),
        (":memory:", None, True),  # tokens still die at restart and on other processes
        ("rps.db", b"s" * 32, False),
    ],
)
async def test_a_random_token_secret_is_a_warning(
    aiohttp_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    db: str,
    secret: bytes | None,
    warned: bool,
) -> None:
    path = db if db == ":memory:" else str(tmp_path / db)
    with structlog.testing.capture_logs() as events:
        monkeypatch.setattr(app_module, "log", structlog.get_logger("game_server"))
        await aiohttp_server(create_app(ServerConfig(db=path, token_secret=secret)))
    found = [e for e in events if e["event"] == "random_token_secret"]
    assert [e["log_level"] for e in found] == (["warning"] if warned else [])


async def test_storage_failures_are_in_healthz_and_metrics(aiohttp_server: ServerFactory) -> None:
    server: TestServer = await aiohttp_server(create_app(ServerConfig()), host="127.0.0.1")
    store = server.app[STORE]
    store.writer.failures, store.writer._lost, store.writer._overflow = 2, 5, 7
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/healthz")) as response:
            health = await response.json()
        async with http.get(server.make_url("/metrics")) as response:
            metrics = await response.text()
    assert (health["store_failures"], health["store_writes_dropped"]) == (2, 12)
    assert "rps_store_failures_total 2.0" in metrics
    assert "rps_store_writes_dropped_total 12.0" in metrics


async def test_leaderboards_by_score_rating_and_period_with_ranks_and_around(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    server: TestServer = await aiohttp_server(
        create_app(ServerConfig(db=str(tmp_path / "rps.db"))), host="127.0.0.1"
    )
    store = server.app[STORE]
    now = time.time()
    ratings = [1800.0, 1650.0, 1650.2, 1400.0]
    for n, (total, rating) in enumerate(zip([5, 5, 3, 1], ratings, strict=True)):
        store.save_player(player(f"p_{n}", total_score=total, wins=1, rating=Rating(rating, 90.0)))
    store.record_match(won("m_today", player("p_3"), player("p_0"), now, points=4))
    await store.flush()

    async def get(query: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http:
            url = server.make_url(f"/applet/leaderboard?{query}")
            async with http.get(url) as response:
                return response.status, await response.json()

    status, body = await get("")  # today's behaviour: by score, all time
    assert status == 200
    assert (body["by"], body["period"]) == ("score", "all")
    # p_3 won 4 points today (its row says 1 + 4 = 5 after the match)
    rows = [(p["rank"], p["id"], p["total_score"]) for p in body["players"]]
    assert rows == [(1, "p_0", 5), (1, "p_1", 5), (1, "p_3", 5), (4, "p_2", 3)]
    assert all("points" not in p and "rating_deviation" in p for p in body["players"])
    # The match rated p_3 and p_0 (as its records say: 1500 each). 1650.2 and 1650.0 both
    # show 1650: one rank, listed by rating; around p_1 the page starts mid-tie.
    status, body = await get("by=rating&limit=2&around=p_1")
    assert status == 200
    assert [(p["rank"], p["id"], p["rating"]) for p in body["players"]] == [
        (1, "p_1", 1650),
        (3, "p_0", 1500),
    ]
    for period in ("day", "week"):
        status, body = await get(f"by=score&period={period}")
        assert status == 200
        assert [(p["rank"], p["id"], p["points"]) for p in body["players"]] == [(1, "p_3", 4)]
    status, body = await get("period=day&around=p_1")  # won nothing today: the top
    assert (status, body["around"]) == (200, None)
    assert [p["id"] for p in body["players"]] == ["p_3"]
    status, body = await get("period=day&around=p_3")
    assert (status, body["around"]) == (200, "p_3")

    for bad in (
        "by=elo",
        "period=month",
        "by=rating&period=day",
        "around=not%20an%20id",
        "limit=0",
        "limit=101",
        "by=",
    ):
        status, body = await get(bad)
        assert (status, body["error"]["code"]) == (400, "bad_request"), bad

    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/applet/players/p_2")) as response,
    ):
        profile = (await response.json())["player"]
    assert profile["rank"] == 4
