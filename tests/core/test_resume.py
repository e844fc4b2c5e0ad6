"""Reconnecting: the grace window, resume, replacement, stored players and tokens.

The service alone, with a fake clock, recording outlets and an in-memory store.
"""

from __future__ import annotations

import random
from typing import Any

from game_server.core.match import MatchRules
from game_server.core.records import PlayerRecord, PlayerResult
from game_server.core.service import GameService, ServiceConfig
from game_server.core.tokens import TokenSigner
from protocol import (
    Bye,
    Choice,
    EndReason,
    Error,
    ErrorCode,
    Hi,
    Movement,
    MovementKind,
    Queued,
    Result,
    Resume,
    Start,
    Winner,
)
from tests.support.fakes import FakeClock, MemoryStore
from tests.support.service import Client, connect

RULES = MatchRules(best_of=3, round_seconds=5.0, round_pause=1.0)
SECRET = b"resume-tests-secret-0123456789"


def make(
    store: MemoryStore | None = None, wall: FakeClock | None = None, **overrides: Any
) -> tuple[GameService, FakeClock]:
    config = ServiceConfig(
        rules=RULES, **{"bot_think": (0.5, 0.5), "reconnect_grace": 20.0, **overrides}
    )
    clock = FakeClock()
    wall = wall or FakeClock(1_700_000_000.0)
    service = GameService(
        config,
        clock,
        rng=random.Random(3),
        store=store or MemoryStore(),
        signer=TokenSigner(SECRET, ttl=3600, clock=wall),
        wall_clock=wall,
    )
    return service, clock


def pair(service: GameService) -> tuple[Client, Client]:
    a, b = connect(service), connect(service)
    a.hello(name="Ann")
    b.hello(name="Bob")
    a.say(type="join", bot="never")
    b.say(type="join", bot="never")
    return a, b


def come_back(service: GameService, client: Client, **hello: Any) -> Client:
    again = connect(service)
    again.say(type="hello", token=client.outlet.last(Hi).token, **hello)
    return again


def test_a_dropped_player_resumes_its_match_where_it_was() -> None:
    service, clock = make()
    a, b = pair(service)
    start = a.outlet.last(Start)
    a.choose("rock", final=False)
    clock.advance(1.0)
    service.disconnect(a.session)
    assert b.outlet.last(Movement).kind is MovementKind.LEFT
    clock.advance(1.5)
    service.tick()
    a2 = come_back(service, a)
    hi, resume = a2.outlet.sent
    assert isinstance(hi, Hi)
    assert hi.player_id == a.outlet.last(Hi).player_id
    assert resume == Resume(
        match_id=start.match_id,
        round=1,
        best_of=3,
        round_ms=5000,
        deadline_ms=2500,  # the round kept running while a was away
        opponent=start.opponent,
        opponent_away=False,
        score=start.score,
        choice=Choice.ROCK,
        final=False,
    )
    assert b.outlet.last(Movement).kind is MovementKind.BACK
    # Play goes on: the choice can still be changed and the round resolves for both.
    a2.say(type="choice", match_id=start.match_id, round=1, choice="paper")
    b.choose("rock")
    assert a2.outlet.last(Result).outcome.value == "win"
    assert b.outlet.last(Result).outcome.value == "lose"


def test_rounds_run_on_while_away_and_resume_says_so() -> None:
    service, clock = make()
    a, b = pair(service)
    service.disconnect(a.session)
    b.choose("rock")
    clock.advance(5.0)  # round 1 times out: a had no choice and loses it
    service.tick()
    assert b.outlet.last(Result).outcome.value == "win"
    clock.advance(0.5)  # in the pause before round 2
    service.tick()
    a2 = come_back(service, a)
    resume = a2.outlet.last(Resume)
    assert (resume.round, resume.deadline_ms, resume.choice, resume.final) == (1, 0, None, False)
    assert (resume.score.you, resume.score.opponent) == (0, 1)
    clock.advance(0.5)
    service.tick()
    start = a2.outlet.last(Start)  # the next round reaches the new connection
    assert (start.round, start.score.opponent) == (2, 1)


def test_a_player_away_too_long_forfeits() -> None:
    service, clock = make(reconnect_grace=3.0)
    a, b = pair(service)
    service.disconnect(a.session)
    clock.advance(2.99)
    service.tick()
    assert not b.outlet.of(Result)
    clock.advance(0.01)
    service.tick()
    final = b.outlet.last(Result)
    assert (final.match_over, final.winner, final.reason) == (
        True,
        Winner.YOU,
        EndReason.OPPONENT_LEFT,
    )
    a2 = come_back(service, a)  # the identity survives; the match does not
    assert a2.outlet.last(Hi).player_id == a.outlet.last(Hi).player_id
    assert not a2.outlet.of(Resume)
    stats = service.roster.by_id[a2.outlet.last(Hi).player_id].stats
    assert (stats.losses, stats.win_streak) == (1, 0)


def test_a_queued_player_keeps_its_place_through_a_drop() -> None:
    service, _ = make()
    a = connect(service)
    a.hello()
    a.say(type="join", bot="never")
    service.disconnect(a.session)
    assert service.health()["queue"] == 1
    a2 = come_back(service, a)
    assert [type(m) for m in a2.outlet.sent] == [Hi, Queued]
    assert a2.outlet.last(Queued).waiting == 1
    b = connect(service)
    b.hello()
    b.say(type="join", bot="never")
    assert a2.outlet.last(Start).match_id == b.outlet.last(Start).match_id


def test_paired_while_away_the_opponent_learns_it_and_the_player_resumes() -> None:
    service, _ = make()
    a = connect(service)
    a.hello()
    a.say(type="join", bot="never")
    service.disconnect(a.session)
    b = connect(service)
    b.hello()
    b.say(type="join", bot="never")
    start = b.outlet.last(Start)
    assert b.outlet.sent[-1] == Movement(match_id=start.match_id, round=1, kind=MovementKind.LEFT)
    resume = come_back(service, a).outlet.last(Resume)
    assert resume.match_id == start.match_id
    assert b.outlet.last(Movement).kind is MovementKind.BACK


def test_a_queue_entry_lapses_with_the_grace() -> None:
    service, clock = make(reconnect_grace=2.0)
    a = connect(service)
    a.hello()
    a.say(type="join", bot="never")
    service.disconnect(a.session)
    clock.advance(2.0)
    service.tick()
    assert service.health()["queue"] == 0
    a2 = come_back(service, a)
    assert [type(m) for m in a2.outlet.sent] == [Hi]


def test_a_guest_that_never_played_is_forgotten_a_minute_after_it_holds_nothing() -> None:
    service, clock = make(reconnect_grace=2.0)
    a = connect(service)
    a.hello()
    a.say(type="join", bot="never")
    service.disconnect(a.session)
    clock.advance(2.0)  # its queue entry is held for the grace, then it holds nothing
    service.tick()
    clock.advance(59.0)
    service.tick()
    assert len(service.roster.by_id) == 1  # a dropped socket may still come back
    clock.advance(1.0)
    service.tick()
    assert service.roster.by_id == {}
    assert service.timers.pending == 0
    # Its token names nobody now: the client starts over as a guest, as after expiry.
    assert come_back(service, a).error().code is ErrorCode.INVALID_TOKEN


def test_replacing_a_live_connection_resumes_without_left_or_back() -> None:
    service, _ = make()
    a, b = pair(service)
    a2 = come_back(service, a)
    assert a.outlet.last(Bye).reason == "replaced"
    assert a2.outlet.last(Resume).match_id == b.outlet.last(Start).match_id
    assert not b.outlet.of(Movement)


def test_the_opponent_away_flag_in_resume() -> None:
    service, _ = make()
    a, b = pair(service)
    service.disconnect(b.session)
    assert come_back(service, a).outlet.last(Resume).opponent_away is True


def test_draining_forfeits_players_who_are_away() -> None:
    service, _ = make()
    a, b = pair(service)
    service.disconnect(a.session)
    service.begin_drain()
    assert b.outlet.last(Result).reason is EndReason.OPPONENT_LEFT
    assert service.rooms.by_id == {}


def test_a_closed_for_flooding_player_gets_no_grace() -> None:
    service, _ = make(flood_rate=1.0, flood_burst=2.0)
    a, b = pair(service)
    for _ in range(40):
        a.say(type="ping")
    assert a.outlet.closed is not None
    assert b.outlet.last(Result).reason is EndReason.OPPONENT_LEFT


# ---------------------------------------------------------------- tokens and storage


def test_an_expired_token_is_refused() -> None:
    wall = FakeClock(1_700_000_000.0)
    service, _ = make(wall=wall)
    a = connect(service)
    a.hello()
    wall.advance(3600)
    again = connect(service)
    again.say(type="hello", token=a.outlet.last(Hi).token, id="h")
    error = again.error()
    assert (error.code, error.ref) == (ErrorCode.INVALID_TOKEN, "h")
    assert "expired" in error.message


def test_every_hi_carries_a_fresh_token() -> None:
    wall = FakeClock(1_700_000_000.0)
    service, _ = make(wall=wall)
    a = connect(service)
    first = a.hello().token
    wall.advance(1800)
    service.disconnect(a.session)
    second = come_back(service, a).outlet.last(Hi).token
    assert second != first
    wall.advance(1800)  # the first token has expired; the second still works
    again = connect(service)
    again.say(type="hello", token=second)
    assert again.outlet.last(Hi).player_id == a.outlet.last(Hi).player_id


def test_a_player_not_in_memory_is_loaded_and_messages_wait_for_it() -> None:
    store = MemoryStore()
    first, _ = make(store)
    a = connect(first)
    player_id = a.hello(name="Ann").player_id
    first.roster.by_id[player_id].stats.total_score = 12  # as if it had won a lot
    first.roster.by_id[player_id].durable = True
    first.disconnect(a.session)
    # A new process (same secret, same storage) has never seen this player.
    store.defer = True
    second, _ = make(store)
    again = connect(second)
    token = a.outlet.last(Hi).token
    again.say(type="hello", token=token, id=1)
    again.say(type="join", bot="now", id=2)  # sent before hi arrived: handled after it
    again.say(type="hello", id=3)
    assert again.error().code is ErrorCode.ALREADY_HELLO
    assert not again.outlet.of(Hi)
    store.answer()
    hi = again.outlet.last(Hi)
    assert (hi.player_id, hi.name, hi.ref) == (player_id, "Ann", 1)
    assert again.outlet.last(Queued).ref == 2
    assert again.outlet.last(Start).opponent.bot
    # The totals come from storage (saved when the first connection dropped).
    assert second.roster.by_id[player_id].stats.total_score == 12


def test_a_token_for_a_player_storage_does_not_know_is_refused() -> None:
    store = MemoryStore(defer=True)
    service, _ = make(store)
    forged_by_a_peer = service.signer.issue("p_unknown")
    a = connect(service)
    a.say(type="hello", token=forged_by_a_peer)
    store.answer()
    assert a.error().code is ErrorCode.INVALID_TOKEN
    assert a.hello().player_id != "p_unknown"


def test_a_hello_whose_player_cannot_be_loaded_is_told_to_retry() -> None:
    store = MemoryStore(defer=True)
    service, _ = make(store)
    store.players["p_x"] = PlayerRecord(id="p_x", name="X", created_at=1.0, last_seen=1.0)
    token = service.signer.issue("p_x")
    a = connect(service)
    a.say(type="hello", token=token, id=7)
    a.say(type="ping", id=8)  # waits for the hello, then finds no player
    store.broken = True
    store.answer()
    # Not invalid_token: that makes clients throw the token away and start over as guests.
    assert [(e.code, e.ref) for e in a.outlet.of(Error)] == [
        (ErrorCode.UNAVAILABLE, 7),
        (ErrorCode.HELLO_REQUIRED, 8),
    ]
    assert not a.outlet.of(Hi)
    assert "p_x" not in service.roster.by_id
    store.broken = False
    a.say(type="hello", token=token, id=9)  # the same connection may try again
    store.answer()
    assert (a.outlet.last(Hi).player_id, a.outlet.last(Hi).ref) == ("p_x", 9)


def test_a_session_closed_while_loading_is_left_alone() -> None:
    store = MemoryStore(defer=True)
    service, _ = make(store)
    store.players["p_x"] = PlayerRecord(id="p_x", name="X", created_at=1.0, last_seen=1.0)
    a = connect(service)
    a.say(type="hello", token=service.signer.issue("p_x"))
    service.disconnect(a.session)
    store.answer()
    assert a.outlet.sent == []
    assert service.online == 0


def test_finished_matches_and_players_are_stored() -> None:
    store = MemoryStore()
    service, clock = make(store)
    a, b = pair(service)
    ann, bob = a.outlet.last(Hi).player_id, b.outlet.last(Hi).player_id
    assert store.players == {}  # guests are stored with their first finished match
    for _ in range(2):
        a.choose("rock")
        b.choose("scissors")
        clock.advance(1.0)
        service.tick()
    (record,) = store.matches
    assert (record.winner, record.reason, record.best_of) == (ann, "rounds", 3)
    assert [s.player_id for s in record.seats] == [ann, bob]
    assert [(r.round, r.choices, r.outcome) for r in record.rounds] == [
        (1, ("rock", "scissors"), "win"),
        (2, ("rock", "scissors"), "win"),
    ]
    assert (store.players[ann].stats.total_score, store.players[ann].stats.wins) == (1, 1)
    assert store.players[bob].stats.losses == 1
    assert store.players[ann].name == "Ann"
    # What storage adds to the stored totals (another process may have moved them).
    assert record.results == (PlayerResult(ann, "win", 1), PlayerResult(bob, "lose", 0))
    assert record.started_at <= record.ended_at


def test_login_finds_the_player_by_openid_and_issues_a_token() -> None:
    store = MemoryStore()
    service, _ = make(store)
    player, token = service.login("openid-1", None, name="Wei", avatar="https://a/w.png")
    assert service.signer.verify(token) == player.id
    assert store.players[player.id].openid == "openid-1"
    live = service.roster.by_id[player.id]
    again, _ = service.login("openid-1", None)
    assert again.id == player.id  # the live player wins over storage
    assert service.roster.by_id[player.id] is live
    assert len(service.roster) == 1
    a = connect(service)
    a.say(type="hello", token=token)
    assert a.outlet.last(Hi).name == "Wei"
    # After a restart the stored record is found by openid and keeps its id and totals.
    restarted, _ = make(store)
    found, _ = restarted.login("openid-1", store.players[player.id])
    assert found.id == player.id
    fresh, _ = restarted.login("openid-2", None)
    assert fresh.id != player.id


def test_a_zero_grace_forfeits_at_once() -> None:
    service, _ = make(reconnect_grace=0.0)
    a, b = pair(service)
    service.disconnect(a.session)
    assert b.outlet.last(Result).reason is EndReason.OPPONENT_LEFT
