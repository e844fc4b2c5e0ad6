"""Players and scores survive a restart: real server processes sharing one SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tests.support.processes import FAST_GAME, ServerProcess, launch

SECRET = "persistence-test-secret-0123456789"


async def play_a_bot(http: aiohttp.ClientSession, server: ServerProcess) -> dict[str, Any]:
    """Hello as Ann, play one match against a house bot; returns hi and the final result."""
    async with http.ws_connect(server.url) as ws:
        await ws.send_str('{"type":"hello","name":"Ann"}')
        hi = orjson.loads(await ws.receive_str(timeout=5))
        await ws.send_str('{"type":"join","bot":"now"}')
        while True:
            message = orjson.loads(await ws.receive_str(timeout=5))
            if message["type"] == "start":
                choice = {"type": "choice", "choice": "rock", "round": message["round"]}
                choice["match_id"] = message["match_id"]
                await ws.send_str(orjson.dumps(choice).decode())
            elif message["type"] == "result" and message["match_over"]:
                return {"hi": hi, "result": message}


async def hello_with(
    http: aiohttp.ClientSession, server: ServerProcess, token: str
) -> dict[str, Any]:
    async with http.ws_connect(server.url) as ws:
        await ws.send_str(orjson.dumps({"type": "hello", "token": token}).decode())
        reply: dict[str, Any] = orjson.loads(await ws.receive_str(timeout=5))
        return reply


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def stop(server: ServerProcess) -> None:
    assert await server.stop() == 0


async def test_scores_and_matches_survive_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "rps.db")
    options = ("--db", db, "--token-secret", SECRET, *FAST_GAME)
    async with aiohttp.ClientSession() as http:
        first = await launch(*options)
        try:
            played = [await play_a_bot(http, first) for _ in range(2)]
        finally:
            await stop(first)
        hi, result = played[-1]["hi"], played[-1]["result"]
        player_id = hi["player_id"]

        second = await launch(*options)
        try:
            again = await hello_with(http, second, played[0]["hi"]["token"])
            assert again["type"] == "hi"
            # Each match was a new guest; the first one is still known by its token.
            assert again["player_id"] == played[0]["hi"]["player_id"]
            assert again["name"] == "Ann"
            assert again["rating"] == played[0]["result"]["rating"]  # stored, read back

            status, profile = await get(http, f"{second.http}/applet/players/{player_id}")
            assert status == 200
            totals = profile["player"]
            assert (totals["total_score"], totals["win_streak"]) == (
                result["total_score"],
                result["win_streak"],
            )
            assert totals["wins"] + totals["losses"] + totals["draws"] == 1
            assert totals["online"] is False
            assert totals["rating"] == result["rating"]
            assert [h["rating"] for h in totals["rating_history"]] == [result["rating"]]
            (match,) = profile["matches"]
            assert match["id"] == result["match_id"]
            assert match["opponent"]["bot"] is True
            expected = {"you": "win", "opponent": "lose", "draw": "draw"}[result["winner"]]
            assert match["outcome"] == expected
            assert [r["you"] for r in match["rounds"]] == ["rock"] * len(match["rounds"])

            status, board = await get(http, f"{second.http}/applet/leaderboard?limit=5")
            assert status == 200
            ranks = [entry["rank"] for entry in board["players"]]
            scores = [entry["total_score"] for entry in board["players"]]
            assert scores == sorted(scores, reverse=True)
            # Ties share a rank: one more than the players above.
            assert ranks == [1 + sum(other > score for other in scores) for score in scores]
            assert {p["id"] for p in board["players"]} == {p["hi"]["player_id"] for p in played}
            assert all("openid" not in entry for entry in board["players"])
        finally:
            await stop(second)

        # Same file, another secret: the old tokens are worthless, the data is not.
        stranger = await launch("--db", db, "--token-secret", "x" * 32, *FAST_GAME)
        try:
            refused = await hello_with(http, stranger, hi["token"])
            assert (refused["type"], refused["code"]) == ("error", "invalid_token")
            status, _ = await get(http, f"{stranger.http}/applet/players/{player_id}")
            assert status == 200
        finally:
            await stop(stranger)


async def test_http_endpoints_refuse_bad_requests(tmp_path: Path) -> None:
    server = await launch("--db", str(tmp_path / "rps.db"))
    try:
        async with aiohttp.ClientSession() as http:
            for query in ("limit=0", "limit=101", "limit=ten", "limit=-1"):
                status, body = await get(http, f"{server.http}/applet/leaderboard?{query}")
                assert (status, body["error"]["code"]) == (400, "bad_request"), query
            status, body = await get(http, f"{server.http}/applet/leaderboard")
            assert (status, body) == (200, {"by": "score", "period": "all", "players": []})
            for player_id in ("p_nobody", "x" * 500):
                status, body = await get(http, f"{server.http}/applet/players/{player_id}")
                assert (status, body["error"]["code"]) == (404, "not_found")
    finally:
        await stop(server)


async def test_odd_queries_and_ids_get_json_errors_never_a_500(tmp_path: Path) -> None:
    server = await launch("--db", str(tmp_path / "rps.db"))
    try:
        async with aiohttp.ClientSession() as http:
            # "²" and "٣" pass str.isdigit(); 5,000 digits trip int()'s digit limit.
            for limit in ("²", "٣", "9" * 5000, "1 ", "+5", "0x10", ""):
                url = URL(f"{server.http}/applet/leaderboard").with_query(limit=limit)
                status, body = await get(http, str(url))
                assert (status, body["error"]["code"]) == (400, "bad_request"), limit
            for name, value in (("by", "²"), ("period", "\x00"), ("around", "é" * 70)):
                url = URL(f"{server.http}/applet/leaderboard").with_query({name: value})
                status, body = await get(http, str(url))
                assert (status, body["error"]["code"]) == (400, "bad_request"), name
            status, body = await get(http, f"{server.http}/applet/leaderboard?limit=0005")
            assert (status, body) == (200, {"by": "score", "period": "all", "players": []})
            for player_id in ("é", "%ED%A0%80", "%00", "p_%0A", "p.x", "p_" + "a" * 4000):
                status, body = await get(http, f"{server.http}/applet/players/{player_id}")
                assert (status, body["error"]["code"]) == (404, "not_found"), player_id
    finally:
        await stop(server)
    assert not [e for e in server.events if e.get("level") == "error"]
