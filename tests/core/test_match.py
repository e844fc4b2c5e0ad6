"""Tests for the sans-I/O match state machine, driven by plain float clocks (no sleeps)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import pytest

from game_server.core.match import Match, MatchRules, Phase, RoundRecord, Seat, Send
from game_server.core.scoring import PlayerStats
from protocol import (
    Choice,
    EndReason,
    ErrorCode,
    Movement,
    MovementKind,
    Opponent,
    Outcome,
    ProtocolError,
    Result,
    Score,
    ServerMessage,
    Start,
    Winner,
)

ROCK, PAPER, SCISSORS = Choice.ROCK, Choice.PAPER, Choice.SCISSORS
T0 = 100.0
ROUND = 5.0
PAUSE = 1.5
MID = "m1"
T = TypeVar("T")

# Seat 0's choice, seat 1's choice for a round whose outcome (for seat 0) is the key.
HANDS = {"W": (ROCK, SCISSORS), "L": (SCISSORS, ROCK), "D": (PAPER, PAPER)}


# ---------------------------------------------------------------- helpers


def make_seat(
    player_id: str,
    stats: PlayerStats | None = None,
    *,
    avatar: str | None = None,
    bot: bool = False,
) -> Seat:
    stats = stats if stats is not None else PlayerStats()
    return Seat(player_id, player_id.title(), stats, avatar=avatar, bot=bot)


def new_match(
    first: Seat | None = None,
    second: Seat | None = None,
    *,
    match_id: str = MID,
    **rules: float,
) -> Match:
    options: dict[str, float] = {"round_seconds": ROUND, "round_pause": PAUSE}
    options.update(rules)
    return Match(
        match_id,
        (first or make_seat("alice"), second or make_seat("bob")),
        MatchRules(**options),  # type: ignore[arg-type]
    )


def started(**rules: float) -> Match:
    match = new_match(**rules)
    match.begin(T0)
    return match


def split(sends: Iterable[Send]) -> tuple[list[ServerMessage], list[ServerMessage]]:
    """The messages for seat 0 and for seat 1, each in send order."""
    by_seat: tuple[list[ServerMessage], list[ServerMessage]] = ([], [])
    for send in sends:
        assert send.seat in (0, 1)
        by_seat[send.seat].append(send.message)
    return by_seat


def of_type(messages: Sequence[ServerMessage], cls: type[T]) -> list[T]:
    return [message for message in messages if isinstance(message, cls)]


def one_each(sends: Sequence[Send], cls: type[T]) -> tuple[T, T]:
    """Exactly one ``cls`` message per seat; returns (seat 0's, seat 1's)."""
    mine, theirs = split(sends)
    found0, found1 = of_type(mine, cls), of_type(theirs, cls)
    assert len(found0) == 1, sends
    assert len(found1) == 1, sends
    return found0[0], found1[0]


def results(sends: Sequence[Send]) -> tuple[Result, Result]:
    return one_each(sends, Result)


def starts(sends: Sequence[Send]) -> tuple[Start, Start]:
    return one_each(sends, Start)


def choice_movement(round_number: int, match_id: str = MID) -> Movement:
    return Movement(match_id=match_id, round=round_number, kind=MovementKind.CHOICE)


def assert_round_result(result: Result) -> None:
    """A result that does not end the match carries none of the end-of-match fields."""
    assert result.match_over is False
    assert result.winner is None
    assert result.reason is None
    assert result.total_score is None
    assert result.win_streak is None
    assert result.rating is None
    assert result.rating_change is None


def assert_final_result(
    result: Result, winner: Winner, reason: EndReason, stats: PlayerStats
) -> None:
    assert result.match_over is True
    assert result.winner is winner
    assert result.reason is reason
    assert result.total_score == stats.total_score
    assert result.win_streak == stats.win_streak
    # Two new players: Glicko-2 moves a decisive result by 162, a draw by nothing.
    change = {Winner.YOU: 162, Winner.OPPONENT: -162, Winner.DRAW: 0}[winner]
    assert (result.rating, result.rating_change) == (1500 + change, change)


def both_final(match: Match, c0: Choice, c1: Choice, now: float) -> list[Send]:
    """Both seats lock in for the current round; the round resolves at once."""
    out = match.choose(0, match.round, c0, True, now)
    out += match.choose(1, match.round, c1, True, now)
    return out


def play(match: Match, outcomes: str, now: float = T0) -> tuple[list[Send], float]:
    """Play rounds with seat-0 outcomes W/L/D until the string or the match runs out.

    Between rounds the pause is driven through ``next_wakeup``/``tick``. Returns every send
    and the time the last round resolved.
    """
    out: list[Send] = []
    for index, code in enumerate(outcomes):
        if match.phase is Phase.PAUSED:
            wake = match.next_wakeup
            assert wake is not None
            now = wake
            out += match.tick(now)
        assert match.phase is Phase.CHOOSING
        assert match.round == index + 1
        c0, c1 = HANDS[code]
        now += 0.5
        out += both_final(match, c0, c1, now)
        if match.over:
            break
    return out, now


# ---------------------------------------------------------------- setup


def test_begin_sends_start_to_both_seats() -> None:
    alice = make_seat("alice", avatar="https://example.com/a.png")
    house = make_seat("house", bot=True)
    match = new_match(alice, house, round_seconds=2.5)
    assert match.phase is Phase.READY
    assert match.next_wakeup is None

    sends = match.begin(T0)

    assert [send.seat for send in sends] == [0, 1]
    start0, start1 = starts(sends)
    assert start0 == Start(
        match_id=MID,
        round=1,
        best_of=3,
        round_ms=2500,
        opponent=Opponent(id="house", name="House", avatar=None, bot=True, rating=1500),
        score=Score(you=0, opponent=0),
    )
    assert start1 == Start(
        match_id=MID,
        round=1,
        best_of=3,
        round_ms=2500,
        opponent=Opponent(
            id="alice", name="Alice", avatar="https://example.com/a.png", bot=False, rating=1500
        ),
        score=Score(you=0, opponent=0),
    )
    assert match.phase is Phase.CHOOSING
    assert match.round == 1
    assert match.next_wakeup == T0 + 2.5


def test_begin_twice_is_an_error() -> None:
    match = started()
    with pytest.raises(RuntimeError):
        match.begin(T0 + 1)


def test_a_player_cannot_play_itself() -> None:
    with pytest.raises(ValueError, match="itself"):
        new_match(make_seat("alice"), make_seat("alice"))


def test_seat_of() -> None:
    match = new_match()
    assert match.seat_of("alice") == 0
    assert match.seat_of("bob") == 1
    with pytest.raises(KeyError):
        match.seat_of("carol")


@pytest.mark.parametrize(
    "rules",
    [
        {"best_of": 0},
        {"round_seconds": 0},
        {"round_seconds": -1},
        {"round_pause": -0.1},
        {"afk_rounds": 0},
    ],
)
def test_rules_are_validated(rules: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(rules))):
        MatchRules(**rules)  # type: ignore[arg-type]


# ---------------------------------------------------------------- choosing and resolving


def test_round_resolves_early_when_both_choices_are_final() -> None:
    match = started()

    first = match.choose(0, 1, ROCK, True, T0 + 1)
    assert first == [Send(1, choice_movement(1))]
    assert match.phase is Phase.CHOOSING

    second = match.choose(1, 1, SCISSORS, True, T0 + 2)
    to0, to1 = split(second)
    assert of_type(to0, Movement) == [choice_movement(1)]
    assert of_type(to1, Movement) == []
    result0, result1 = results(second)
    assert result0 == Result(
        match_id=MID,
        round=1,
        you=ROCK,
        opponent=SCISSORS,
        outcome=Outcome.WIN,
        score=Score(you=1, opponent=0),
    )
    assert result1 == Result(
        match_id=MID,
        round=1,
        you=SCISSORS,
        opponent=ROCK,
        outcome=Outcome.LOSE,
        score=Score(you=0, opponent=1),
    )
    assert_round_result(result0)
    assert_round_result(result1)
    assert match.wins == [1, 0]
    assert match.phase is Phase.PAUSED
    assert match.next_wakeup == T0 + 2 + PAUSE


def test_non_final_choice_is_replaced_and_latest_resolves_at_deadline() -> None:
    match = started()
    assert match.choose(0, 1, ROCK, False, T0 + 0.5) == [Send(1, choice_movement(1))]
    assert match.choose(0, 1, SCISSORS, False, T0 + 1.0) == []  # no second movement
    assert match.choose(1, 1, ROCK, True, T0 + 1.5) == [Send(0, choice_movement(1))]
    # seat 0 is not final, so nothing resolves early ...
    assert match.phase is Phase.CHOOSING
    assert match.choose(0, 1, PAPER, False, T0 + 2.0) == []
    assert match.tick(T0 + ROUND - 0.001) == []
    assert match.phase is Phase.CHOOSING

    # ... but the deadline resolves with the latest choice (paper beats rock)
    assert match.next_wakeup == T0 + ROUND
    result0, result1 = results(match.tick(T0 + ROUND))
    assert (result0.you, result0.opponent, result0.outcome) == (PAPER, ROCK, Outcome.WIN)
    assert (result1.you, result1.opponent, result1.outcome) == (ROCK, PAPER, Outcome.LOSE)
    assert match.history == [RoundRecord(1, (PAPER, ROCK), Outcome.WIN, ROUND)]


def test_non_final_then_final_resolves_early_with_the_final_choice() -> None:
    match = started()
    match.choose(0, 1, ROCK, False, T0 + 0.5)
    match.choose(1, 1, PAPER, True, T0 + 1.0)
    sends = match.choose(0, 1, SCISSORS, True, T0 + 1.5)
    assert of_type(split(sends)[1], Movement) == []  # not seat 0's first choice
    result0, _ = results(sends)
    assert (result0.you, result0.opponent, result0.outcome) == (SCISSORS, PAPER, Outcome.WIN)


@pytest.mark.parametrize("second_final", [True, False])
def test_final_choice_is_locked(second_final: bool) -> None:
    match = started()
    match.choose(0, 1, ROCK, True, T0 + 1)
    with pytest.raises(ProtocolError) as caught:
        match.choose(0, 1, PAPER, second_final, T0 + 2)
    assert caught.value.code is ErrorCode.CHOICE_LOCKED
    # the locked choice stands
    result0, _ = results(match.choose(1, 1, SCISSORS, True, T0 + 3))
    assert result0.you is ROCK
    assert result0.outcome is Outcome.WIN


def test_movement_only_on_first_choice_and_only_to_opponent() -> None:
    match = started()
    sends = match.choose(1, 1, ROCK, False, T0 + 0.1)
    sends += match.choose(1, 1, PAPER, False, T0 + 0.2)
    sends += match.choose(1, 1, SCISSORS, True, T0 + 0.3)
    to0, to1 = split(sends)
    assert to0 == [choice_movement(1)]
    assert to1 == []
    movement = to0[0]
    assert isinstance(movement, Movement)
    assert movement.face is None  # never reveals what was chosen

    # a new round allows one movement again
    match.tick(T0 + ROUND)
    match.tick(match.next_wakeup)  # type: ignore[arg-type]
    now = match.next_wakeup - ROUND + 0.1  # type: ignore[operator]
    assert match.choose(0, 2, ROCK, False, now) == [Send(1, choice_movement(2))]
    assert match.choose(0, 2, PAPER, False, now) == []


def test_deadline_with_one_missing_choice_missing_loses() -> None:
    match = started()
    match.choose(1, 1, SCISSORS, False, T0 + 1)
    assert match.next_wakeup == T0 + ROUND
    sends = match.tick(T0 + ROUND)
    result0, result1 = results(sends)
    assert result0 == Result(
        match_id=MID,
        round=1,
        you=None,
        opponent=SCISSORS,
        outcome=Outcome.LOSE,
        score=Score(you=0, opponent=1),
    )
    assert result1 == Result(
        match_id=MID,
        round=1,
        you=SCISSORS,
        opponent=None,
        outcome=Outcome.WIN,
        score=Score(you=1, opponent=0),
    )
    assert match.wins == [0, 1]
    assert match.history == [RoundRecord(1, (None, SCISSORS), Outcome.LOSE, ROUND)]


def test_deadline_with_both_missing_is_a_draw() -> None:
    match = started()
    sends = match.tick(T0 + ROUND)
    result0, result1 = results(sends)
    for result in (result0, result1):
        assert (result.you, result.opponent, result.outcome) == (None, None, Outcome.DRAW)
        assert result.score == Score(you=0, opponent=0)
        assert_round_result(result)
    assert match.wins == [0, 0]
    assert match.phase is Phase.PAUSED


def test_tick_before_deadline_does_nothing() -> None:
    match = started()
    assert match.tick(T0) == []
    assert match.tick(T0 + ROUND - 1e-6) == []
    assert match.phase is Phase.CHOOSING


# ---------------------------------------------------------------- afk


def miss_round(match: Match, choosers: dict[int, Choice]) -> list[Send]:
    """Seats in ``choosers`` choose (non-final); the round resolves at its deadline."""
    wake = match.next_wakeup
    assert wake is not None
    out: list[Send] = []
    if match.phase is Phase.PAUSED:
        out += match.tick(wake)
        wake = match.next_wakeup
        assert wake is not None
    for seat, choice in choosers.items():
        out += match.choose(seat, match.round, choice, False, wake - 1)
    out += match.tick(wake)
    return out


def test_afk_after_two_consecutive_missed_rounds() -> None:
    match = started(best_of=5)
    first = miss_round(match, {0: ROCK})
    assert_round_result(results(first)[0])
    assert not match.over
    sends = miss_round(match, {0: PAPER})
    assert match.over
    assert match.round == 2
    assert match.wins == [2, 0]  # 2-0 with 3 left would not end a best-of-5
    assert match.winner == 0
    assert match.reason is EndReason.AFK
    result0, result1 = results(sends)
    assert result0.outcome is Outcome.WIN
    assert result1.outcome is Outcome.LOSE
    assert_final_result(result0, Winner.YOU, EndReason.AFK, match.seats[0].stats)
    assert_final_result(result1, Winner.OPPONENT, EndReason.AFK, match.seats[1].stats)
    assert match.seats[0].stats.wins == 1
    assert match.seats[1].stats.losses == 1
    assert match.next_wakeup is None
    assert [type(send.message) for send in sends][-2:] == [Result, Result]
    assert [start.round for start in of_type(split(sends)[0], Start)] == [2]


def test_a_choice_in_between_resets_the_afk_count() -> None:
    match = started(best_of=7)
    miss_round(match, {0: ROCK})  # seat 1 misses (1)
    miss_round(match, {0: ROCK, 1: PAPER})  # seat 1 chooses: count back to 0
    miss_round(match, {0: ROCK})  # seat 1 misses (1)
    assert not match.over
    assert match.wins == [2, 1]
    sends = miss_round(match, {0: ROCK})  # seat 1 misses (2): afk
    assert match.over
    assert match.reason is EndReason.AFK
    assert match.winner == 0
    assert match.round == 4
    _, result1 = results(sends)
    assert result1.reason is EndReason.AFK
    assert result1.winner is Winner.OPPONENT


def test_non_final_choice_counts_as_present_for_afk() -> None:
    match = started(best_of=7)
    miss_round(match, {0: ROCK})
    miss_round(match, {0: ROCK, 1: SCISSORS})  # non-final, never locked
    miss_round(match, {0: ROCK})
    assert not match.over


def test_both_afk_is_a_draw_even_when_one_leads() -> None:
    match = started(best_of=5)
    both_final(match, ROCK, SCISSORS, T0 + 1)  # seat 0 leads 1-0
    miss_round(match, {})
    assert not match.over
    sends = miss_round(match, {})
    assert match.over
    assert match.winner is None
    assert match.reason is EndReason.AFK
    for result, seat in zip(results(sends), match.seats, strict=True):
        assert result.outcome is Outcome.DRAW  # the round itself
        assert_final_result(result, Winner.DRAW, EndReason.AFK, seat.stats)
        assert seat.stats.draws == 1
        assert seat.stats.total_score == 0


def test_afk_rounds_rule_is_configurable() -> None:
    match = started(best_of=5, afk_rounds=1)
    sends = miss_round(match, {1: ROCK})
    assert match.over
    assert match.winner == 1
    assert results(sends)[1].reason is EndReason.AFK


# ---------------------------------------------------------------- match length


@pytest.mark.parametrize(
    ("best_of", "outcomes", "rounds", "winner"),
    [
        (3, "WW", 2, 0),
        (3, "LL", 2, 1),
        (3, "WLD", 3, None),
        (3, "WLW", 3, 0),
        (3, "LWL", 3, 1),
        (3, "DWW", 3, 0),
        (3, "WDD", 3, 0),
        (3, "WDL", 3, None),
        (3, "DDD", 3, None),
        (1, "W", 1, 0),
        (1, "L", 1, 1),
        (1, "D", 1, None),
        (5, "WWW", 3, 0),
        (5, "LLL", 3, 1),
        (5, "WWDW", 4, 0),
        (5, "WWLLW", 5, 0),
        (5, "WLWLD", 5, None),
        (5, "DDDDW", 5, 0),
        (5, "DDDDD", 5, None),
    ],
)
def test_match_length_and_winner(
    best_of: int, outcomes: str, rounds: int, winner: int | None
) -> None:
    match = new_match(best_of=best_of)
    sends = match.begin(T0)
    sends += play(match, outcomes)[0]
    assert match.over
    assert match.round == rounds == len(outcomes)
    assert len(match.history) == rounds
    assert match.winner == winner
    assert match.reason is EndReason.ROUNDS

    # one start per round per seat, one result per round per seat, only the last final
    to0, to1 = split(sends)
    for messages in (to0, to1):
        assert [start.round for start in of_type(messages, Start)] == list(range(1, rounds + 1))
        round_results = of_type(messages, Result)
        assert [result.round for result in round_results] == list(range(1, rounds + 1))
        for result in round_results[:-1]:
            assert_round_result(result)
        assert round_results[-1].match_over is True
        assert all(start.best_of == best_of for start in of_type(messages, Start))

    expected = {None: (Winner.DRAW, Winner.DRAW), 0: (Winner.YOU, Winner.OPPONENT)}
    expected[1] = (Winner.OPPONENT, Winner.YOU)
    final0, final1 = of_type(to0, Result)[-1], of_type(to1, Result)[-1]
    assert_final_result(final0, expected[winner][0], EndReason.ROUNDS, match.seats[0].stats)
    assert_final_result(final1, expected[winner][1], EndReason.ROUNDS, match.seats[1].stats)
    assert final0.score == Score(you=match.wins[0], opponent=match.wins[1])
    assert final1.score == Score(you=match.wins[1], opponent=match.wins[0])
    assert match.next_wakeup is None
    assert match.tick(T0 + 1000) == []

    # never beyond: the next round is refused
    with pytest.raises(ProtocolError) as caught:
        match.choose(0, rounds + 1, ROCK, True, T0 + 1000)
    assert caught.value.code is ErrorCode.NOT_IN_MATCH


def test_best_of_three_two_nil_ends_early() -> None:
    match = started()
    sends, _ = play(match, "WW")
    result0, result1 = of_type(split(sends)[0], Result)[-1], of_type(split(sends)[1], Result)[-1]
    assert result0.round == 2
    assert result0.score == Score(you=2, opponent=0)
    assert result1.score == Score(you=0, opponent=2)
    assert_final_result(result0, Winner.YOU, EndReason.ROUNDS, match.seats[0].stats)
    assert_final_result(result1, Winner.OPPONENT, EndReason.ROUNDS, match.seats[1].stats)
    assert match.seats[0].stats.total_score == 1
    assert match.phase is Phase.OVER


def test_one_all_then_draw_is_a_match_draw() -> None:
    match = started()
    sends, _ = play(match, "LWD")
    result0, result1 = results(sends[-2:])
    for result in (result0, result1):
        assert result.round == 3
        assert result.outcome is Outcome.DRAW
        assert result.score == Score(you=1, opponent=1)
        assert result.winner is Winner.DRAW
        assert result.reason is EndReason.ROUNDS
    for seat in match.seats:
        assert seat.stats.draws == 1
        assert (seat.stats.wins, seat.stats.losses, seat.stats.total_score) == (0, 0, 0)


# ---------------------------------------------------------------- pauses


def test_round_pause_timing() -> None:
    match = started()
    resolved_at = T0 + 2
    both_final(match, ROCK, SCISSORS, resolved_at)
    assert match.phase is Phase.PAUSED
    assert match.next_wakeup == resolved_at + PAUSE
    assert match.tick(resolved_at + PAUSE - 0.001) == []
    assert match.phase is Phase.PAUSED

    sends = match.tick(resolved_at + PAUSE)
    start0, start1 = starts(sends)
    assert len(sends) == 2
    assert start0.round == start1.round == 2
    assert start0.score == Score(you=1, opponent=0)
    assert start1.score == Score(you=0, opponent=1)
    assert start0.opponent.id == "bob"
    assert start1.opponent.id == "alice"
    assert match.phase is Phase.CHOOSING
    assert match.next_wakeup == resolved_at + PAUSE + ROUND


def test_round_pause_after_deadline_resolution() -> None:
    match = started()
    match.tick(T0 + ROUND)
    assert match.next_wakeup == T0 + ROUND + PAUSE
    assert starts(match.tick(T0 + ROUND + PAUSE))[0].round == 2


def test_zero_round_pause_starts_next_round_at_once() -> None:
    match = started(round_pause=0)
    sends = both_final(match, ROCK, SCISSORS, T0 + 1)
    # results first, then the next start, in the same batch
    kinds = [type(send.message) for send in sends if not isinstance(send.message, Movement)]
    assert kinds == [Result, Result, Start, Start]
    start0, _ = starts(sends)
    assert start0.round == 2
    assert start0.score == Score(you=1, opponent=0)
    assert match.phase is Phase.CHOOSING
    assert match.next_wakeup == T0 + 1 + ROUND
    # the new round accepts choices immediately
    assert match.choose(0, 2, ROCK, True, T0 + 1) == [Send(1, choice_movement(2))]


def test_zero_round_pause_through_tick() -> None:
    match = started(round_pause=0)
    sends = match.tick(T0 + ROUND)
    assert [type(send.message) for send in sends] == [Result, Result, Start, Start]
    assert match.next_wakeup == T0 + 2 * ROUND


def test_zero_round_pause_does_not_start_after_the_last_round() -> None:
    match = started(round_pause=0)
    sends, _ = play(match, "WW")
    assert of_type(split(sends)[0], Start)[-1].round == 2
    assert match.over
    assert match.next_wakeup is None


# ---------------------------------------------------------------- wrong_round


def assert_refused(match: Match, round_number: int, now: float, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        match.choose(0, round_number, ROCK, True, now)
    assert caught.value.code is code


def test_wrong_round_for_a_future_round() -> None:
    match = started()
    assert_refused(match, 2, T0 + 1, ErrorCode.WRONG_ROUND)
    # nothing was recorded: the current round still yields a movement
    assert match.choose(0, 1, ROCK, True, T0 + 1) == [Send(1, choice_movement(1))]


def test_wrong_round_for_the_previous_round() -> None:
    match = started()
    both_final(match, ROCK, SCISSORS, T0 + 1)
    match.tick(T0 + 1 + PAUSE)
    assert match.round == 2
    assert_refused(match, 1, T0 + 2 + PAUSE, ErrorCode.WRONG_ROUND)


def test_wrong_round_during_the_pause() -> None:
    match = started()
    both_final(match, ROCK, SCISSORS, T0 + 1)
    assert match.phase is Phase.PAUSED
    assert_refused(match, 1, T0 + 1.5, ErrorCode.WRONG_ROUND)
    assert_refused(match, 2, T0 + 1.5, ErrorCode.WRONG_ROUND)


@pytest.mark.parametrize("late", [0.0, 0.001, 10.0])
def test_wrong_round_at_or_after_the_deadline(late: float) -> None:
    match = started()
    assert_refused(match, 1, T0 + ROUND + late, ErrorCode.WRONG_ROUND)
    # refusing did not record the choice: the round resolves with nothing from seat 0
    result0, _ = results(match.tick(T0 + ROUND + late))
    assert result0.you is None


def test_choice_just_before_the_deadline_is_accepted() -> None:
    match = started()
    match.choose(0, 1, ROCK, True, T0 + ROUND - 1e-9)
    result0, _ = results(match.tick(T0 + ROUND))
    assert result0.you is ROCK


def test_wrong_round_before_begin() -> None:
    match = new_match()
    assert_refused(match, 1, T0, ErrorCode.WRONG_ROUND)


def test_choose_after_the_match_is_over() -> None:
    match = started()
    play(match, "WW")
    assert_refused(match, 2, T0 + 100, ErrorCode.NOT_IN_MATCH)
    assert_refused(match, 3, T0 + 100, ErrorCode.NOT_IN_MATCH)


# ---------------------------------------------------------------- forfeit


def test_forfeit_during_a_round() -> None:
    match = started()
    both_final(match, ROCK, SCISSORS, T0 + 1)
    match.tick(T0 + 1 + PAUSE)
    match.choose(0, 2, PAPER, False, T0 + 3)
    stats0, stats1 = match.seats[0].stats, match.seats[1].stats

    sends = match.forfeit(0)  # the leader leaves

    assert match.over
    assert match.winner == 1
    assert match.reason is EndReason.FORFEIT
    assert match.next_wakeup is None
    assert (stats0.win_streak, stats0.losses, stats0.total_score) == (0, 1, 0)
    assert (stats1.win_streak, stats1.wins, stats1.total_score) == (1, 1, 1)
    assert [send.seat for send in sends] == [0, 1]
    leaver, stayer = results(sends)
    assert leaver.round == stayer.round == 2
    assert leaver.outcome is Outcome.LOSE
    assert_final_result(leaver, Winner.OPPONENT, EndReason.FORFEIT, stats0)
    assert stayer.outcome is Outcome.WIN
    assert_final_result(stayer, Winner.YOU, EndReason.OPPONENT_LEFT, stats1)
    assert leaver.score == Score(you=1, opponent=0)
    assert stayer.score == Score(you=0, opponent=1)


def test_forfeit_during_a_pause() -> None:
    match = started()
    both_final(match, ROCK, SCISSORS, T0 + 1)
    assert match.phase is Phase.PAUSED
    sends = match.forfeit(1)
    stayer, leaver = results(sends)
    assert (stayer.you, stayer.opponent) == (None, None)
    assert (leaver.you, leaver.opponent) == (None, None)
    assert leaver.outcome is Outcome.LOSE
    assert_final_result(leaver, Winner.OPPONENT, EndReason.FORFEIT, match.seats[1].stats)
    assert stayer.outcome is Outcome.WIN
    assert_final_result(stayer, Winner.YOU, EndReason.OPPONENT_LEFT, match.seats[0].stats)
    # the pause timer is gone and no further round starts
    assert match.next_wakeup is None
    assert match.tick(T0 + 100) == []


def test_forfeit_after_over_returns_nothing() -> None:
    match = started()
    match.forfeit(0)
    stats = [(s.stats.total_score, s.stats.wins, s.stats.losses) for s in match.seats]
    assert match.forfeit(0) == []
    assert match.forfeit(1) == []
    # settled only once
    assert [(s.stats.total_score, s.stats.wins, s.stats.losses) for s in match.seats] == stats
    assert_refused(match, 1, T0 + 1, ErrorCode.NOT_IN_MATCH)
    with pytest.raises(ProtocolError) as caught:
        match.face(0, 1)
    assert caught.value.code is ErrorCode.NOT_IN_MATCH


def test_forfeit_after_rounds_end_returns_nothing() -> None:
    match = started()
    play(match, "WW")
    assert match.forfeit(1) == []
    assert match.reason is EndReason.ROUNDS
    assert match.seats[0].stats.wins == 1


# ---------------------------------------------------------------- faces


def test_face_relays_to_the_opponent_only() -> None:
    match = started()
    assert match.face(0, 3) == [
        Send(1, Movement(match_id=MID, round=1, kind=MovementKind.FACE, face=3))
    ]
    assert match.face(1, 0) == [
        Send(0, Movement(match_id=MID, round=1, kind=MovementKind.FACE, face=0))
    ]
    both_final(match, ROCK, SCISSORS, T0 + 1)
    # faces still flow during the pause
    assert match.face(1, 2) == [
        Send(0, Movement(match_id=MID, round=1, kind=MovementKind.FACE, face=2))
    ]


def test_face_does_not_count_as_a_choice() -> None:
    match = started()
    match.face(0, 1)
    assert match.choose(0, 1, ROCK, True, T0 + 1) == [Send(1, choice_movement(1))]


# ---------------------------------------------------------------- scoring across matches


def test_scoring_and_streaks_across_consecutive_matches() -> None:
    alice_stats, bob_stats = PlayerStats(), PlayerStats()

    def fresh(number: int, swap: bool = False) -> Match:
        alice, bob = make_seat("alice", alice_stats), make_seat("bob", bob_stats)
        seats = (bob, alice) if swap else (alice, bob)
        match = new_match(*seats, match_id=f"m{number}")
        match.begin(T0)
        return match

    # 1: alice wins -> streak 1, total 1
    sends, _ = play(fresh(1), "WW")
    final0, final1 = results(sends[-2:])
    assert (final0.total_score, final0.win_streak) == (1, 1)
    assert (final1.total_score, final1.win_streak) == (0, 0)
    assert alice_stats == PlayerStats(total_score=1, win_streak=1, wins=1)
    assert bob_stats == PlayerStats(losses=1)

    # 2: alice wins again, from seat 1 -> streak 2, total 1 + 2 = 3
    sends, _ = play(fresh(2, swap=True), "LWL")
    bob_final, alice_final = results(sends[-2:])
    assert alice_final.winner is Winner.YOU
    assert (alice_final.total_score, alice_final.win_streak) == (3, 2)
    assert (bob_final.total_score, bob_final.win_streak) == (0, 0)
    assert alice_stats == PlayerStats(total_score=3, win_streak=2, wins=2)
    assert bob_stats == PlayerStats(losses=2)

    # 3: alice loses -> streak 0, total unchanged; bob's first win is worth 1
    sends, _ = play(fresh(3), "LL")
    alice_final, bob_final = results(sends[-2:])
    assert (alice_final.total_score, alice_final.win_streak) == (3, 0)
    assert (bob_final.total_score, bob_final.win_streak) == (1, 1)
    assert alice_stats == PlayerStats(total_score=3, win_streak=0, wins=2, losses=1)
    assert bob_stats == PlayerStats(total_score=1, win_streak=1, wins=1, losses=2)

    # 4: a draw changes neither total nor streak, but counts
    sends, _ = play(fresh(4), "DDD")
    alice_final, bob_final = results(sends[-2:])
    assert alice_final.winner is bob_final.winner is Winner.DRAW
    assert (alice_final.total_score, alice_final.win_streak) == (3, 0)
    assert (bob_final.total_score, bob_final.win_streak) == (1, 1)
    assert alice_stats == PlayerStats(total_score=3, win_streak=0, wins=2, losses=1, draws=1)
    assert bob_stats == PlayerStats(total_score=1, win_streak=1, wins=1, losses=2, draws=1)

    # 5: bob wins by forfeit -> streak 2 (the draw did not break it), total 1 + 2 = 3
    match = fresh(5)
    sends = match.forfeit(0)
    alice_final, bob_final = results(sends)
    assert (bob_final.total_score, bob_final.win_streak) == (3, 2)
    assert bob_stats.total_score == 3
    assert alice_stats.losses == 2


def test_settle_draw_counts_draws_only() -> None:
    alice_stats = PlayerStats(total_score=5, win_streak=2, wins=3)
    bob_stats = PlayerStats(total_score=1, win_streak=0, losses=4)
    match = new_match(make_seat("alice", alice_stats), make_seat("bob", bob_stats), best_of=1)
    match.begin(T0)
    match.tick(T0 + ROUND)  # both missing: a drawn round ends a best-of-1 as a draw
    assert match.over
    assert match.winner is None
    assert alice_stats == PlayerStats(total_score=5, win_streak=2, wins=3, draws=1)
    assert bob_stats == PlayerStats(total_score=1, win_streak=0, losses=4, draws=1)


# ---------------------------------------------------------------- history


def test_history_records_every_round() -> None:
    match = started(best_of=5)
    miss_round(match, {0: ROCK, 1: SCISSORS})  # 1: win for seat 0
    miss_round(match, {})  # 2: both missing
    miss_round(match, {0: SCISSORS, 1: SCISSORS})  # 3: same hands
    miss_round(match, {1: PAPER})  # 4: seat 0 missing
    assert not match.over
    assert match.history == [
        RoundRecord(1, (ROCK, SCISSORS), Outcome.WIN, ROUND),
        RoundRecord(2, (None, None), Outcome.DRAW, ROUND),
        RoundRecord(3, (SCISSORS, SCISSORS), Outcome.DRAW, ROUND),
        RoundRecord(4, (None, PAPER), Outcome.LOSE, ROUND),
    ]
    assert match.wins == [1, 1]
