"""Two real server processes on one real PostgreSQL database (no Redis): each player's
profile, the leaderboard and the matches are the same from both, and a token one node
issued works on the other."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.processes import FAST_GAME, ServerProcess, launch
from tests.system.test_persistence import get, hello_with, play_a_bot

SECRET = "two nodes' shared token secret, 32+"


async def views(
    http: aiohttp.ClientSession, node: ServerProcess, player_ids: list[str]
) -> dict[str, object]:
    """What a node says about the players and the leaderboard (``online`` left out: it is
    each node's own)."""
    out: dict[str, object] = {}
    for player_id in player_ids:
        status, profile = await get(http, f"{node.http}/applet/players/{player_id}")
        assert status == 200
        profile["player"].pop("online", None)
        out[player_id] = profile
    status, board = await get(http, f"{node.http}/applet/leaderboard?limit=10")
    assert status == 200
    for entry in board["players"]:
        entry.pop("online", None)
    out["leaderboard"] = board
    return out


async def test_two_nodes_on_one_postgresql_database_agree(postgres_url: str) -> None:
    options = ("--db", postgres_url, "--token-secret", SECRET, *FAST_GAME)
    nodes = await asyncio.gather(launch(*options), launch(*options))
    try:
        async with aiohttp.ClientSession() as http:
            n0, n1 = nodes
            on_n0 = await play_a_bot(http, n0)
            on_n1 = await play_a_bot(http, n1)
            ids = [on_n0["hi"]["player_id"], on_n1["hi"]["player_id"]]

            # n0's player comes back on n1 with n0's token: the same player, from storage
            # (once n0 has committed the match: its writes are handed over every 50 ms).
            await asyncio.sleep(0.5)
            again = await hello_with(http, n1, on_n0["hi"]["token"])
            assert again["type"] == "hi", again
            assert (again["player_id"], again["name"]) == (ids[0], "Ann")

            await asyncio.sleep(0.5)  # n1 saves her at the disconnect (last_seen): committed
            seen = [await views(http, node, ids) for node in nodes]
            assert seen[0] == seen[1]
            for player_id, played in zip(ids, (on_n0, on_n1), strict=True):
                profile = seen[0][player_id]
                assert isinstance(profile, dict)
                assert [m["id"] for m in profile["matches"]] == [played["result"]["match_id"]]
                totals = profile["player"]
                assert totals["total_score"] == played["result"]["total_score"]
                assert totals["wins"] + totals["losses"] + totals["draws"] == 1
            board = seen[0]["leaderboard"]
            assert isinstance(board, dict)
            assert {entry["id"] for entry in board["players"]} == set(ids)
            health = [await get(http, f"{node.http}/healthz") for node in nodes]
            assert all(status == 200 for status, _ in health)
    finally:
        for node in nodes:
            assert await node.stop() == 0
