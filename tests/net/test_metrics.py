"""``GET /metrics`` counts what happened, in Prometheus' text format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from game_server.cli.assembly import create_app
from game_server.config import ServerConfig
from game_server.core.match import MatchRules
from game_server.core.service import ServiceConfig
from game_server.ops.metrics import PrometheusObserver
from tests.support.wire import Player, connect


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_messages_matches_errors_and_rounds(
    aiohttp_server: Callable[..., Any],
) -> None:
    config = ServerConfig(
        service=ServiceConfig(
            rules=MatchRules(best_of=1, round_seconds=5.0, round_pause=0.0),
            bot_think=(0.0, 0.0),
            bot_after=60,
        )
    )
    server: TestServer = await aiohttp_server(create_app(config), host="127.0.0.1")
    async with aiohttp.ClientSession() as http:
        ann, bob, cy = [await connect(http, server, name) for name in ("Ann", "Bob", "Cy")]
        await ann.ws.send_str("not json")
        await ann.expect("error")
        await ann.send(type="join")
        await bob.send(type="join")
        start = await ann.expect("start", skip=("queued",))
        for player, hand in ((ann, "rock"), (bob, "paper")):
            await player.send(type="choice", match_id=start["match_id"], round=1, choice=hand)
        assert (await ann.expect("result", skip=("movement",)))["match_over"]
        await cy.send(type="join", bot="now")
        bot_start = await cy.expect("start", skip=("queued",))
        await cy.send(type="choice", match_id=bot_start["match_id"], round=1, choice="rock")
        assert (await cy.expect("result", skip=("movement",)))["match_over"]
        await cy.send(type="join", bot="never")
        await cy.expect("queued")

        response = await http.get(server.make_url("/metrics"))
        assert response.status == 200
        assert response.content_type == "text/plain"
        got = samples(await response.text())

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("rps_messages_in_total", type="hello") == 3
    assert value("rps_messages_in_total", type="join") == 4
    assert value("rps_messages_in_total", type="choice") == 3
    assert value("rps_messages_out_total", type="hi") == 3
    assert value("rps_messages_out_total", type="start") == 3  # the house bot gets none
    assert value("rps_messages_out_total", type="result") == 3
    assert value("rps_errors_total", code="bad_json") == 1
    assert value("rps_errors_total", code="choice_locked") == 0
    assert value("rps_matches_started_total", bot="false") == 1
    assert value("rps_matches_started_total", bot="true") == 1
    assert value("rps_matches_finished_total", reason="rounds", bot="false") == 1
    assert value("rps_matches_finished_total", reason="rounds", bot="true") == 1
    assert value("rps_matches_finished_total", reason="afk", bot="false") == 0
    assert value("rps_round_seconds_count") == 2
    assert value("rps_players_connected") == 3
    assert value("rps_queue_length") == 1
    assert value("rps_matches_live") == 0
    assert value("rps_send_queue_drops_total") == 0
    assert value("rps_store_backlog") >= 0  # present; near zero unless the disk is slow


async def test_each_app_has_its_own_registry(aiohttp_server: Callable[..., Any]) -> None:
    first: TestServer = await aiohttp_server(create_app(), host="127.0.0.1")
    second: TestServer = await aiohttp_server(create_app(), host="127.0.0.1")
    async with aiohttp.ClientSession() as http:
        player: Player = await connect(http, first, "Ann")
        await player.send(type="ping", t=1)
        await player.expect("pong")
        text = await (await http.get(second.make_url("/metrics"))).text()
    assert samples(text)[("rps_messages_in_total", (("type", "hello"),))] == 0


def test_round_durations_land_in_cumulative_le_buckets() -> None:
    observer = PrometheusObserver()
    for seconds in (0.05, 0.3, 0.5, 4.0, 100.0):
        observer.round_resolved(seconds)
    got = samples(observer.render().decode())

    def bucket(le: str) -> float:
        return got[("rps_round_seconds_bucket", (("le", le),))]

    assert bucket("0.05") == 1  # a bound is inclusive ("le")
    assert bucket("0.1") == 1
    assert bucket("0.5") == 3
    assert bucket("3.0") == 3
    assert bucket("5.0") == 4
    assert bucket("30.0") == 4
    assert bucket("+Inf") == 5
    assert got[("rps_round_seconds_count", ())] == 5
    assert got[("rps_round_seconds_sum", ())] == 104.85
