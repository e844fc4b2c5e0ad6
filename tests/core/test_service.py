"""The game service end to end, minus sockets: real codec, fake clock, recording outlets."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import structlog

from game_server.core.ids import time_ordered_id
from game_server.core.match import MatchRules
from game_server.core.matchmaker import InMemoryMatchmaker
from game_server.core.rating import BOT_RATINGS, Rating
from game_server.core.service import GameService, ServiceConfig
from protocol import (
    Bye,
    EndReason,
    Error,
    ErrorCode,
    Hello,
    Hi,
    Join,
    Left,
    Movement,
    MovementKind,
    Pong,
    Queued,
    Result,
    Start,
    Winner,
    encode,
)
from tests.support.fakes import FakeClock, RecordingOutlet
from tests.support.service import Client, connect


def make(**overrides: Any) -> tuple[GameService, FakeClock]:
    rules = overrides.pop("rules", MatchRules(best_of=3, round_seconds=5.0, round_pause=1.0))
    config = ServiceConfig(rules=rules, **{"bot_think": (0.5, 0.5), **overrides})
    clock = FakeClock()
    return GameService(config, clock, rng=random.Random(7)), clock


def pair(service: GameService) -> tuple[Client, Client]:
    a, b = connect(service), connect(service)
    a.hello(name="Ann")
    b.hello(name="Bob")
    a.say(type="join")
    b.say(type="join")
    return a, b


def rematch(a: Client, b: Client) -> None:
    """Both join again for a human (``never``) and wait, the clock running, until their
    windows widen enough to pair them: after a match their ratings are apart."""
    service = a.service
    clock = service.clock
    assert isinstance(clock, FakeClock)
    starts = len(a.outlet.of(Start))
    a.say(type="join", bot="never")
    b.say(type="join", bot="never")
    for _ in range(100):
        if len(a.outlet.of(Start)) > starts:
            return
        clock.advance(0.5)
        service.tick()
    raise AssertionError("no rematch")


def play_match(a: Client, b: Client, a_hand: str, b_hand: str) -> None:
    """Play rounds until the match is over, ticking through the pauses."""
    service = a.service
    clock = service.clock
    assert isinstance(clock, FakeClock)
    for _ in range(10):
        a.choose(a_hand)
        b.choose(b_hand)
        if a.outlet.last(Result).match_over:
            return
        clock.advance(service.config.rules.round_pause)
        service.tick()
    raise AssertionError("match did not end")


# ---------------------------------------------------------------- hello


def test_ids_sort_by_creation_and_stay_apart_within_a_millisecond() -> None:
    clock = FakeClock(1_764_000_000.0)  # Unix seconds, as the service's wall clock
    ids = []
    for _ in range(50):
        ids += [time_ordered_id("m_", clock) for _ in range(20)]  # same millisecond
        clock.advance(0.002)  # at least one whole millisecond, float rounding or not
    assert len(set(ids)) == len(ids)
    by_millisecond = [ids[i : i + 20] for i in range(0, len(ids), 20)]
    for earlier, later in itertools.pairwise(by_millisecond):
        assert max(earlier) < min(later)  # a later millisecond always sorts after
    assert all(len(i) == 2 + 11 + 16 and i.startswith("m_") for i in ids)
    int(ids[0][2:], 16)  # hex


def test_hello_assigns_identity_and_counts_online() -> None:
    service, _ = make()
    a, b = connect(service), connect(service)
    hi_a = a.hello(id=1)
    assert hi_a.ref == 1
    assert hi_a.name.startswith("Player ")
    assert hi_a.online == 1
    assert hi_a.protocol == 1
    hi_b = b.hello(name="  Bob  ", avatar="https://example.com/b.png")
    assert (hi_b.name, hi_b.online) == ("Bob", 2)
    assert hi_a.player_id != hi_b.player_id
    assert hi_a.token != hi_b.token
    assert service.health()["players"] == 2


def test_everything_but_hello_needs_hello_first() -> None:
    service, _ = make()
    a = connect(service)
    for message in ({"type": "join"}, {"type": "ping", "t": 1}, {"type": "leave"}):
        a.say(**message, id="x")
        error = a.error()
        assert (error.code, error.ref) == (ErrorCode.HELLO_REQUIRED, "x")
    assert a.outlet.of(Pong) == []


def test_second_hello_is_refused() -> None:
    service, _ = make()
    a = connect(service)
    a.hello()
    a.say(type="hello", id=9)
    assert (a.error().code, a.error().ref) == (ErrorCode.ALREADY_HELLO, 9)


def test_token_brings_back_the_same_player_and_totals() -> None:
    service, _ = make(bot_after=100)
    a, b = pair(service)
    play_match(a, b, "rock", "scissors")
    assert a.outlet.last(Result).total_score == 1
    hi = a.outlet.last(Hi)
    service.disconnect(a.session)
    again = connect(service)
    back = again.hello(token=hi.token)
    assert back.player_id == hi.player_id
    assert back.name == "Ann"
    rematch(b, again)
    play_match(again, b, "rock", "scissors")
    final = again.outlet.last(Result)
    assert (final.total_score, final.win_streak) == (3, 2)


def test_a_forged_token_is_refused_and_a_guest_hello_still_works() -> None:
    service, _ = make()
    a = connect(service)
    a.say(type="hello", token="no-such-token", id=3)
    error = a.error()
    assert (error.code, error.ref) == (ErrorCode.INVALID_TOKEN, 3)
    assert "log in again" in error.message
    assert not a.outlet.of(Hi)
    a.say(type="join")
    assert a.error().code is ErrorCode.HELLO_REQUIRED
    hi = a.hello()  # the client forgets the token and starts over
    assert service.roster.by_id[hi.player_id].session is a.session


def test_second_connection_with_token_replaces_first_and_keeps_the_seat() -> None:
    service, _ = make()
    a, b = pair(service)
    token = a.outlet.last(Hi).token
    match_id = a.outlet.last(Start).match_id
    a2 = connect(service)
    a2.hello(token=token)
    assert a.outlet.last(Bye).reason == "replaced"
    assert a.outlet.closed == (1000, "replaced")
    assert service.health()["players"] == 2
    # The old socket closing late must not cost the new one its match.
    service.disconnect(a.session)
    assert b.outlet.of(Result) == []
    a2.say(type="choice", match_id=match_id, round=1, choice="paper")
    b.choose("rock")
    result = a2.outlet.last(Result)
    assert (result.you, result.opponent, result.outcome.value) == ("paper", "rock", "win")


# ---------------------------------------------------------------- queue and bots


def test_two_humans_are_paired_first_come_first_served() -> None:
    service, _ = make()
    a, b, c = connect(service), connect(service), connect(service)
    for client, name in ((a, "Ann"), (b, "Bob"), (c, "Cy")):
        client.hello(name=name)
    a.say(type="join", id="j")
    assert a.outlet.last(Queued) == Queued(waiting=1, ref="j")
    assert a.outlet.of(Start) == []
    b.say(type="join")
    assert b.outlet.last(Queued).waiting == 2
    start_a, start_b = a.outlet.last(Start), b.outlet.last(Start)
    assert start_a.match_id == start_b.match_id
    assert (start_a.opponent.name, start_b.opponent.name) == ("Bob", "Ann")
    assert not start_a.opponent.bot
    assert (start_a.round, start_a.best_of, start_a.round_ms) == (1, 3, 5000)
    c.say(type="join")
    assert c.outlet.of(Start) == []
    assert service.health() == {"players": 3, "matches": 1, "queue": 1, "matches_finished": 0}


def test_auto_join_gets_a_bot_after_the_wait_and_the_bot_plays() -> None:
    service, clock = make(bot_after=3.0)
    a = connect(service)
    a.hello()
    a.say(type="join")
    clock.advance(2.99)
    service.tick()
    assert a.outlet.of(Start) == []
    assert service.next_wakeup == pytest.approx(1003.0)
    clock.advance(0.01)
    service.tick()
    start = a.outlet.last(Start)
    assert start.opponent.bot
    assert start.opponent.name
    # The bot thinks for 0.5 s, then the human sees that it chose.
    clock.advance(0.49)
    service.tick()
    assert a.outlet.of(Movement) == []
    clock.advance(0.01)
    service.tick()
    assert a.outlet.last(Movement).kind is MovementKind.CHOICE
    a.choose("rock")
    result = a.outlet.last(Result)
    assert result.you.value == "rock"
    assert result.opponent is not None


@pytest.mark.parametrize("rating", [2000.0, 1300.0, 1500.0, 1530.0])
def test_a_house_bot_of_about_the_players_level_sits_down(rating: float) -> None:
    """With ``mix``: one of the strategies rated within 50 of the player, by chance, else
    the closest-rated one (a strong player meets the strongest bot, a weak one the
    weakest)."""
    band = {name for name, bot in BOT_RATINGS.items() if abs(bot.rating - rating) <= 50}
    closest = min(BOT_RATINGS, key=lambda name: abs(BOT_RATINGS[name].rating - rating))
    expected = {BOT_RATINGS[name].shown for name in (band or {closest})}
    seen = set()
    for seed in range(12):
        service, clock = make(bot_after=3.0)
        service.context.rng.seed(seed)
        a = connect(service)
        a.hello()
        player = service.roster.by_id[a.outlet.last(Hi).player_id]
        player.rating = Rating(rating, 60.0)
        a.say(type="join")
        clock.advance(3.0)
        service.tick()
        start = a.outlet.last(Start)
        assert start.opponent.bot
        assert start.opponent.rating in expected, (rating, start.opponent.rating)
        seen.add(start.opponent.rating)
    if len(band) > 1:
        assert len(seen) > 1  # variety within the band


def test_a_configured_bot_strategy_is_always_that_one() -> None:
    service, _ = make(bot_after=0.0, bot_strategy="copycat")
    a = connect(service)
    a.hello()
    service.roster.by_id[a.outlet.last(Hi).player_id].rating = Rating(2400.0, 60.0)
    a.say(type="join")
    assert a.outlet.last(Start).opponent.rating == BOT_RATINGS["copycat"].shown


def test_bot_now_starts_at_once_and_never_waits_forever() -> None:
    service, clock = make(bot_after=3.0)
    a, b = connect(service), connect(service)
    a.hello()
    b.hello()
    a.say(type="join", bot="now")
    assert a.outlet.last(Start).opponent.bot
    b.say(type="join", bot="never")
    clock.advance(3600)
    service.tick()
    assert b.outlet.of(Start) == []
    assert service.health()["queue"] == 1


def test_bot_match_runs_to_the_end_with_a_human_who_plays() -> None:
    service, clock = make(bot_think=(0.0, 0.0))
    a = connect(service)
    a.hello()
    a.say(type="join", bot="now")
    for _ in range(5):
        service.tick()  # the bot's zero think time is a timer due now
        a.choose("paper")
        if a.outlet.last(Result).match_over:
            break
        clock.advance(1.0)
        service.tick()
    final = a.outlet.last(Result)
    assert final.match_over
    assert final.reason is EndReason.ROUNDS
    assert service.rooms.by_id == {}


def test_join_twice_and_join_in_a_match_are_refused() -> None:
    service, _ = make()
    a = connect(service)
    a.hello()
    a.say(type="join", bot="never")
    a.say(type="join", id=2)
    assert (a.error().code, a.error().ref) == (ErrorCode.ALREADY_QUEUED, 2)
    b = connect(service)
    b.hello()
    b.say(type="join")
    b.say(type="join")
    assert b.error().code is ErrorCode.ALREADY_IN_MATCH


def test_leave_the_queue() -> None:
    service, clock = make(bot_after=1.0)
    a = connect(service)
    a.hello()
    a.say(type="join")
    a.say(type="leave", id="l")
    assert a.outlet.last(Left).ref == "l"
    clock.advance(10)
    service.tick()
    assert a.outlet.of(Start) == []
    assert service.health()["queue"] == 0
    a.say(type="leave")  # idempotent
    assert len(a.outlet.of(Left)) == 2


# ---------------------------------------------------------------- playing


def test_full_match_between_two_humans_with_streak_scoring() -> None:
    service, _ = make()
    a, b = pair(service)
    play_match(a, b, "paper", "rock")
    final_a, final_b = a.outlet.last(Result), b.outlet.last(Result)
    assert (final_a.winner, final_b.winner) == (Winner.YOU, Winner.OPPONENT)
    assert final_a.reason is EndReason.ROUNDS
    assert final_a.score.you == 2
    assert final_a.score.opponent == 0
    assert (final_a.total_score, final_a.win_streak) == (1, 1)
    assert (final_b.total_score, final_b.win_streak) == (0, 0)
    assert service.health()["matches"] == 0
    assert service.health()["matches_finished"] == 1
    # Both may play again (once their windows reach each other's new ratings, 1662 and
    # 1338: 4.5 s); the winner's streak grows.
    rematch(a, b)
    play_match(a, b, "scissors", "paper")
    assert (a.outlet.last(Result).total_score, a.outlet.last(Result).win_streak) == (3, 2)
    rematch(a, b)
    play_match(a, b, "rock", "rock")  # 3 draws: a drawn match leaves totals alone
    drawn = a.outlet.last(Result)
    assert (drawn.winner, drawn.total_score, drawn.win_streak) == (Winner.DRAW, 3, 2)


def test_a_match_logs_one_info_line_at_its_end_with_who_played_and_how() -> None:
    service, _ = make()
    with structlog.testing.capture_logs() as events:
        a, b = pair(service)
        play_match(a, b, "paper", "rock")
    assert a.session.player is not None
    assert b.session.player is not None
    ann, bob = a.session.player.id, b.session.player.id
    about = [event for event in events if "match_id" in event]
    assert [(event["event"], event["log_level"]) for event in about] == [
        ("match_started", "debug"),
        ("match_over", "info"),
    ]
    over = about[-1]
    assert over["players"] == [ann, bob]
    assert (over["bot"], over["winner"], over["reason"], over["rounds"]) == (
        False,
        ann,
        "rounds",
        2,
    )
    assert 0 <= over["seconds"] < 60


def test_opponent_sees_movement_not_the_choice() -> None:
    service, _ = make()
    a, b = pair(service)
    a.choose("rock", final=False)
    movement = b.outlet.last(Movement)
    assert movement.kind is MovementKind.CHOICE
    assert b"rock" not in encode(b.outlet.sent[-1])
    assert a.outlet.of(Movement) == []


def test_choice_errors_carry_the_ref() -> None:
    service, clock = make()
    a = connect(service)
    a.hello()
    a.say(type="choice", match_id="m_x", round=1, choice="rock", id=1)
    assert (a.error().code, a.error().ref) == (ErrorCode.NOT_IN_MATCH, 1)
    b = connect(service)
    b.hello()
    a.say(type="join")
    b.say(type="join")
    a.choose("rock", match_id="m_other", id=2)
    assert (a.error().code, a.error().ref) == (ErrorCode.NOT_IN_MATCH, 2)
    a.choose("rock", round=2, id=3)
    assert (a.error().code, a.error().ref) == (ErrorCode.WRONG_ROUND, 3)
    a.choose("rock", id=4)
    a.choose("paper", id=5)
    assert (a.error().code, a.error().ref) == (ErrorCode.CHOICE_LOCKED, 5)
    b.choose("rock")
    a.choose("paper", round=1, id=6)  # round 1 is resolved; round 2 starts after the pause
    assert (a.error().code, a.error().ref) == (ErrorCode.WRONG_ROUND, 6)
    clock.advance(1.0)
    service.tick()
    assert a.outlet.last(Start).round == 2


def test_deadline_resolves_with_latest_non_final_choice() -> None:
    service, clock = make()
    a, b = pair(service)
    a.choose("rock", final=False)
    a.choose("scissors", final=False)
    b.choose("paper")
    assert a.outlet.of(Result) == []  # a's choice is not final, so the round waits
    clock.advance(5.0)
    service.tick()
    result = a.outlet.last(Result)
    assert (result.you.value, result.opponent.value, result.outcome.value) == (
        "scissors",
        "paper",
        "win",
    )


def test_face_is_relayed_to_the_opponent_only() -> None:
    service, _ = make()
    a = connect(service)
    a.hello()
    a.say(type="face", face=2)
    assert a.error().code is ErrorCode.NOT_IN_MATCH
    b = connect(service)
    b.hello()
    a.say(type="join")
    b.say(type="join")
    a.say(type="face", face=3)
    movement = b.outlet.last(Movement)
    assert (movement.kind, movement.face) == (MovementKind.FACE, 3)
    assert a.outlet.of(Movement) == []


def test_ping_pong() -> None:
    service, clock = make()
    a = connect(service)
    a.hello()
    a.say(type="ping", t=1234.5, id="p")
    assert a.outlet.last(Pong) == Pong(t=1234.5, ref="p")
    a.say(type="ping")
    assert a.outlet.last(Pong).t == int(clock.now * 1000)


# ---------------------------------------------------------------- leaving


def test_disconnect_mid_match_forfeits_to_the_opponent_after_the_grace() -> None:
    service, clock = make(reconnect_grace=0.8)
    a, b = pair(service)
    a.choose("rock")  # a wins round 1 ...
    b.choose("scissors")
    service.disconnect(a.session)  # ... then drops during the pause
    left = b.outlet.last(Movement)
    assert (left.kind, left.round) == (MovementKind.LEFT, 1)
    assert not b.outlet.last(Result).match_over
    clock.advance(0.79)
    service.tick()
    assert not b.outlet.last(Result).match_over
    clock.advance(0.01)
    service.tick()
    final = b.outlet.last(Result)
    assert final.match_over
    assert (final.winner, final.reason) == (Winner.YOU, EndReason.OPPONENT_LEFT)
    assert (final.total_score, final.win_streak) == (1, 1)
    assert service.rooms.by_id == {}
    assert service.health()["players"] == 1
    b.say(type="join")  # b is free to play again
    assert b.outlet.last(Queued).waiting == 1


def test_leave_mid_match_forfeits_and_answers_left() -> None:
    service, _ = make()
    a, b = pair(service)
    a.choose("rock")
    a.say(type="leave", id=7)
    mine = a.outlet.sent[-2]
    assert isinstance(mine, Result)
    assert (mine.winner, mine.reason, mine.you.value) == (
        Winner.OPPONENT,
        EndReason.FORFEIT,
        "rock",
    )
    assert a.outlet.sent[-1] == Left(ref=7)
    theirs = b.outlet.last(Result)
    assert (theirs.winner, theirs.reason, theirs.opponent.value) == (
        Winner.YOU,
        EndReason.OPPONENT_LEFT,
        "rock",
    )
    a.say(type="choice", match_id=theirs.match_id, round=1, choice="rock")
    assert a.error().code is ErrorCode.NOT_IN_MATCH


def test_afk_player_forfeits_after_two_missed_rounds() -> None:
    service, clock = make()
    a, b = pair(service)
    for _ in range(2):
        a.choose("rock")
        clock.advance(5.0)
        service.tick()
        clock.advance(1.0)
        service.tick()
    final = b.outlet.last(Result)
    assert (final.match_over, final.winner, final.reason) == (True, Winner.OPPONENT, EndReason.AFK)
    assert a.outlet.last(Result).total_score == 1


def test_disconnected_players_are_forgotten_after_a_while() -> None:
    service, clock = make(forget_after=60.0, reconnect_grace=10.0)
    a, b = pair(service)
    token = a.outlet.last(Hi).token
    service.disconnect(a.session)
    service.disconnect(b.session)
    assert len(service.roster.by_id) == 2
    clock.advance(10)  # both away past the grace: the match is forfeited
    service.tick()
    assert service.rooms.by_id == {}
    clock.advance(59)
    service.tick()
    assert len(service.roster.by_id) == 2
    clock.advance(1)
    service.tick()
    assert service.roster.by_id == {}
    assert service.timers.pending == 0
    # Without storage, a forgotten player's token names nobody any more.
    again = connect(service)
    again.say(type="hello", token=token)
    assert again.error().code is ErrorCode.INVALID_TOKEN


# ---------------------------------------------------------------- abuse


def test_flooding_is_warned_then_closed_and_the_match_forfeited() -> None:
    service, _ = make()
    a, b = pair(service)
    a.outlet.take()
    for _ in range(40):
        a.say(type="ping")  # the burst allowance, all at one instant
    assert len(a.outlet.of(Pong)) == 38  # hello and join spent two of the 40
    limited = a.outlet.of(Error)
    assert limited
    assert {e.code for e in limited} == {ErrorCode.RATE_LIMITED}
    for _ in range(100):
        a.say(type="ping")
    assert a.outlet.closed == (1008, "flooding")
    assert a.outlet.last(Bye).reason == "flooding"
    assert b.outlet.last(Result).reason is EndReason.OPPONENT_LEFT
    sent = len(a.outlet.sent)
    a.say(type="ping")
    assert len(a.outlet.sent) == sent  # nothing more for a closed session


def test_binary_frames_are_refused_without_closing() -> None:
    service, _ = make()
    a = connect(service)
    service.receive_unsupported(a.session, "binary")
    assert a.error().code is ErrorCode.UNSUPPORTED_FRAME
    assert a.outlet.closed is None
    a.hello()


def test_state_is_released_after_many_matches() -> None:
    service, clock = make(forget_after=10.0, bot_think=(0.0, 0.3))
    for _ in range(30):
        a, b = pair(service)
        c = connect(service)
        c.hello()
        c.say(type="join", bot="now")
        play_match(a, b, "rock", "paper")
        service.disconnect(a.session)
        service.disconnect(b.session)
        service.disconnect(c.session)
    assert service.health()["queue"] == 0
    clock.advance(service.config.reconnect_grace)  # the bot matches left running end now
    service.tick()
    assert service.rooms.by_id == {}
    clock.advance(11)
    service.tick()
    assert service.roster.by_id == {}
    assert service.timers.pending == 0


# ---------------------------------------------------------------- lobbies and adapters


def test_lobbies_queue_apart_and_play_their_own_rules() -> None:
    service, clock = make()
    one_round = MatchRules(best_of=1, round_seconds=3.0, round_pause=0.0)
    service.add_lobby("legacy", one_round, InMemoryMatchmaker(bot_after=1.0))
    with pytest.raises(ValueError, match="exists"):
        service.add_lobby("legacy", one_round, InMemoryMatchmaker(bot_after=1.0))
    native = connect(service)
    legacy_outlet = RecordingOutlet()
    legacy = Client(service, service.connect(legacy_outlet, "legacy"), legacy_outlet)
    native.hello()
    service.handle(legacy.session, Hello(name="Old", id=5))
    assert legacy.outlet.last(Hi).ref == 5
    native.say(type="join")
    service.handle(legacy.session, Join())
    assert service.health()["queue"] == 2  # two queues, one player each: never paired
    assert not native.outlet.of(Start)
    assert not legacy.outlet.of(Start)
    clock.advance(1.0)
    service.tick()
    start = legacy.outlet.last(Start)  # the legacy lobby's bot came after its own 1 s
    assert (start.best_of, start.round_ms, start.opponent.bot) == (1, 3000, True)
    assert not native.outlet.of(Start)
    seats = service.seats_of(start.match_id)
    assert seats is not None
    assert seats[0].name == "Old"
    assert service.seats_of("m_nope") is None
    service.handle(legacy.session, Join(id="again"))
    assert legacy.error().code is ErrorCode.ALREADY_IN_MATCH
    assert legacy.error().ref == "again"
