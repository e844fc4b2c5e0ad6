"""Private rooms and rematches over real sockets: the whole app on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from game_server.core.match import MatchRules
from tests.conftest import ServerFactory
from tests.support.wire import Player, connect

ONE_ROUND = MatchRules(best_of=1, round_seconds=2.0, round_pause=0.05)


async def play_one_round(ann: Player, bob: Player, *, skip: tuple[str, ...] = ()) -> str:
    """A best-of-1 match from its ``start`` to its final ``result``; its id."""
    starts = [await ann.expect("start", skip=skip), await bob.expect("start", skip=skip)]
    match_id: str = starts[0]["match_id"]
    assert starts[1]["match_id"] == match_id
    assert starts[0]["round"] == 1
    assert starts[0]["opponent"]["id"] == bob.hi["player_id"]
    await ann.send(type="choice", match_id=match_id, round=1, choice="paper")
    await bob.send(type="choice", match_id=match_id, round=1, choice="rock")
    for player, winner in ((ann, "you"), (bob, "opponent")):
        result = await player.expect("result", skip=("movement",))
        assert result["match_over"] is True
        assert result["winner"] == winner
    return match_id


async def test_a_friend_match_then_a_rematch(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(rules=ONE_ROUND, bot_after=0.2)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="create_room", id="r1")
    room = await ann.expect("room")
    assert room["ref"] == "r1"
    assert room["expires_in"] == 600
    code = room["code"]
    assert len(code) == 6
    # A house bot is due after 0.2 s for a queued player; a room's creator never gets one.
    await bob.send(type="join", room=code.lower(), id="j1")
    first = await play_one_round(ann, bob)
    # Rematch: Ann asks, Bob is told and accepts; a new match with the same two starts.
    await ann.send(type="rematch", match_id=first)
    offer = await bob.expect("rematch")
    assert offer == {"type": "rematch", "match_id": first, "from": "opponent"}
    await bob.send(type="rematch", match_id=first)
    second = await play_one_round(ann, bob)
    assert second != first
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_friends_total{event="room_joined"} 1.0' in metrics
    assert 'rps_friends_total{event="rematch_started"} 1.0' in metrics
    assert "rps_rooms_open 0.0" in metrics


@pytest.mark.parametrize(
    ("case", "code"),
    [("unknown", "room_not_found"), ("own", "own_room"), ("taken", "room_full")],
)
async def test_room_errors_over_the_wire(
    start_server: ServerFactory, http: aiohttp.ClientSession, case: str, code: str
) -> None:
    server = await start_server(rules=ONE_ROUND)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="create_room")
    room: dict[str, Any] = await ann.expect("room")
    joiner, text = bob, room["code"]
    if case == "unknown":
        text = "22222A" if room["code"] != "22222A" else "22222B"
    elif case == "own":
        joiner = ann
    else:
        await bob.send(type="join", room=room["code"])
        await bob.expect("start")
        joiner = await connect(http, server, "Carol")
    await joiner.send(type="join", room=text, id=5)
    error = await joiner.expect("error")
    assert (error["code"], error["ref"]) == (code, 5)
    await joiner.send(type="ping", t=1)  # the connection goes on
    assert (await joiner.expect("pong", skip=("movement",)))["t"] == 1
    if case == "unknown":
        metrics = await (await http.get(server.make_url("/metrics"))).text()
        assert 'rps_errors_total{code="room_not_found"} 1.0' in metrics


async def test_a_guesser_is_rate_limited_and_counted(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(rules=ONE_ROUND)
    guesser = await connect(http, server, "Mallory")
    answers = []
    for attempt in range(6):
        await guesser.send(type="join", room=f"ZZZZZ{attempt + 2}")
        answers.append((await guesser.expect("error"))["code"])
    assert answers == ["room_not_found"] * 4 + ["rate_limited"] * 2
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'rps_limited_total{limit="room_lookups"} 2.0' in metrics


async def test_an_expired_room_is_closed_and_its_code_refused(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(rules=ONE_ROUND, room_ttl=0.3)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="create_room")
    code = (await ann.expect("room"))["code"]
    closed = await ann.expect("room_closed")
    assert closed == {"type": "room_closed", "code": code, "reason": "expired"}
    await bob.send(type="join", room=code)
    assert (await bob.expect("error"))["code"] == "room_not_found"


async def test_a_rematch_declined_when_the_other_queues(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = await start_server(rules=ONE_ROUND, bot_after=30)
    ann, bob = await connect(http, server, "Ann"), await connect(http, server, "Bob")
    await ann.send(type="join", bot="never")
    await bob.send(type="join", bot="never")
    first = await play_one_round(ann, bob, skip=("queued",))
    await ann.send(type="rematch", match_id=first)
    await bob.expect("rematch")
    await bob.send(type="join", bot="never")
    declined = await ann.expect("rematch_declined")
    assert declined == {"type": "rematch_declined", "match_id": first, "reason": "queued"}
