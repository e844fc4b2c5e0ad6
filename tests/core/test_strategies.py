"""Tests for the bot strategies: contract, determinism, and that each one plays as promised."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sized
from itertools import cycle, islice, pairwise

import pytest

from game_server.core.strategies import (
    STRATEGIES,
    STRATEGY_NAMES,
    CopycatStrategy,
    CycleStrategy,
    FrequencyStrategy,
    MarkovStrategy,
    RandomStrategy,
    Strategy,
    WinStayLoseShiftStrategy,
    make_strategy,
)
from protocol.choices import Choice, Outcome, judge

ROCK, PAPER, SCISSORS = Choice.ROCK, Choice.PAPER, Choice.SCISSORS
ALL_CHOICES = tuple(Choice)


def noisy_opponent(seed: int) -> Iterator[Choice | None]:
    """Random hands with roughly one round in six missing."""
    rng = random.Random(seed)
    while True:
        yield None if rng.random() < 1 / 6 else rng.choice(ALL_CHOICES)


def play(strategy: Strategy, opponent: Iterable[Choice | None]) -> list[tuple[Choice, Outcome]]:
    """Play ``strategy`` against a fixed sequence of hands; return its hands and outcomes."""
    record = []
    for theirs in opponent:
        mine = strategy.next_choice()
        record.append((mine, judge(mine, theirs)))
        strategy.observe(mine, theirs)
    return record


def win_rate(record: list[tuple[Choice, Outcome]]) -> float:
    return sum(outcome is Outcome.WIN for _, outcome in record) / len(record)


# --- registry ----------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(STRATEGY_NAMES) == set(STRATEGIES)
    assert len(STRATEGY_NAMES) == len(set(STRATEGY_NAMES))
    assert {"random", "cycle", "frequency", "markov", "copycat", "wsls"} <= set(STRATEGY_NAMES)
    assert "mix" not in STRATEGY_NAMES
    for name, factory in STRATEGIES.items():
        assert factory(rng=random.Random(0)).name == name


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_rng_is_required(name: str) -> None:
    with pytest.raises(TypeError):
        STRATEGIES[name]()


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_plays_choices_against_noisy_input(name: str) -> None:
    strategy = STRATEGIES[name](rng=random.Random(1))
    assert isinstance(strategy, Strategy)
    hands = [hand for hand, _ in play(strategy, islice(noisy_opponent(2), 200))]
    assert len(hands) == 200
    assert all(isinstance(hand, Choice) for hand in hands)


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_deterministic_for_fixed_seed(name: str) -> None:
    first = play(STRATEGIES[name](rng=random.Random(42)), islice(noisy_opponent(7), 200))
    second = play(STRATEGIES[name](rng=random.Random(42)), islice(noisy_opponent(7), 200))
    assert first == second


def test_different_seeds_give_different_random_play() -> None:
    first = play(RandomStrategy(rng=random.Random(1)), [ROCK] * 50)
    second = play(RandomStrategy(rng=random.Random(2)), [ROCK] * 50)
    assert first != second


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_memory_stays_bounded(name: str) -> None:
    strategy = STRATEGIES[name](rng=random.Random(3))
    play(strategy, islice(noisy_opponent(4), 3000))

    def sizes(value: object) -> Iterator[int]:
        if isinstance(value, Sized) and not isinstance(value, str):
            yield len(value)
        if isinstance(value, dict):
            for item in value.values():
                yield from sizes(item)

    assert max(sizes(vars(strategy)), default=0) <= 27


def test_make_strategy_by_name() -> None:
    for name in STRATEGY_NAMES:
        strategy = make_strategy(name, random.Random(0))
        assert type(strategy) is type(STRATEGIES[name](rng=random.Random(0)))
        assert strategy.name == name


def test_make_strategy_without_rng() -> None:
    assert make_strategy("random").next_choice() in ALL_CHOICES


def test_make_strategy_mix() -> None:
    seen = set()
    for seed in range(60):
        strategy = make_strategy("mix", random.Random(seed))
        assert strategy.name in STRATEGY_NAMES
        seen.add(strategy.name)
    assert seen == set(STRATEGY_NAMES)


def test_make_strategy_unknown_name() -> None:
    with pytest.raises(ValueError, match="nonsense") as excinfo:
        make_strategy("nonsense", random.Random(0))
    message = str(excinfo.value)
    for name in (*STRATEGY_NAMES, "mix"):
        assert name in message


# --- random --------------------------------------------------------------------------------------


def test_random_is_roughly_uniform() -> None:
    strategy = RandomStrategy(rng=random.Random(5))
    counts = Counter(hand for hand, _ in play(strategy, islice(noisy_opponent(6), 3000)))
    assert set(counts) == set(ALL_CHOICES)
    assert all(800 <= count <= 1200 for count in counts.values()), counts


# --- cycle ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_cycle_order(seed: int) -> None:
    strategy = CycleStrategy(rng=random.Random(seed))
    hands = [hand for hand, _ in play(strategy, islice(noisy_opponent(seed), 30))]
    for current, following in pairwise(hands):
        assert following is current.beaten_by  # rock -> paper -> scissors -> rock
    assert hands[1] is {ROCK: PAPER, PAPER: SCISSORS, SCISSORS: ROCK}[hands[0]]


def test_cycle_starts_at_random_offset() -> None:
    starts = {CycleStrategy(rng=random.Random(seed)).next_choice() for seed in range(30)}
    assert starts == set(ALL_CHOICES)


# --- frequency -----------------------------------------------------------------------------------


def test_frequency_beats_constant_rock() -> None:
    record = play(FrequencyStrategy(rng=random.Random(8)), [ROCK] * 40)
    assert all(hand is PAPER for hand, _ in record[1:])


def test_frequency_is_random_without_data() -> None:
    firsts = {FrequencyStrategy(rng=random.Random(seed)).next_choice() for seed in range(30)}
    assert firsts == set(ALL_CHOICES)


def test_frequency_ignores_missing_hands() -> None:
    strategy = FrequencyStrategy(rng=random.Random(9))
    play(strategy, [SCISSORS] + [None] * 50)
    assert strategy.next_choice() is ROCK


def test_frequency_adapts_to_a_switch() -> None:
    strategy = FrequencyStrategy(rng=random.Random(10))
    play(strategy, [ROCK] * 200)
    record = play(strategy, [SCISSORS] * 30)
    hands = [hand for hand, _ in record]
    assert hands[0] is PAPER
    assert all(hand is ROCK for hand in hands[10:])


def test_frequency_breaks_ties_with_rng() -> None:
    picks = set()
    for seed in range(30):
        strategy = FrequencyStrategy(rng=random.Random(seed), decay=1.0)
        play(strategy, [ROCK, SCISSORS])
        picks.add(strategy.next_choice())
    assert picks == {PAPER, ROCK}


def test_frequency_rejects_bad_decay() -> None:
    with pytest.raises(ValueError, match="decay"):
        FrequencyStrategy(rng=random.Random(0), decay=0.0)


# --- markov --------------------------------------------------------------------------------------


def rps_cycler(start: int = 0) -> Iterator[Choice]:
    return islice(cycle((ROCK, PAPER, SCISSORS)), start, None)


@pytest.mark.parametrize("seed", range(3))
def test_markov_exploits_cycler(seed: int) -> None:
    record = play(MarkovStrategy(rng=random.Random(seed)), islice(rps_cycler(seed), 310))
    assert win_rate(record[10:]) > 0.9


@pytest.mark.parametrize("seed", range(3))
def test_frequency_does_not_exploit_cycler(seed: int) -> None:
    record = play(FrequencyStrategy(rng=random.Random(seed)), islice(rps_cycler(seed), 310))
    assert win_rate(record[10:]) < 0.5


def test_markov_uses_order_two() -> None:
    # Each hand is followed by itself or by the hand that beats it, depending on the hand
    # before, so order 1 wins about half the rounds; order 2 can win them all.
    pattern = (ROCK, ROCK, PAPER, PAPER, SCISSORS, SCISSORS)
    record = play(MarkovStrategy(rng=random.Random(11)), islice(cycle(pattern), 600))
    assert win_rate(record[60:]) > 0.95


def test_markov_random_without_data() -> None:
    firsts = {MarkovStrategy(rng=random.Random(seed)).next_choice() for seed in range(30)}
    assert firsts == set(ALL_CHOICES)


def test_markov_does_not_learn_across_gaps() -> None:
    # Rock then (gap) scissors, over and over: no real transition was ever seen.
    strategy = MarkovStrategy(rng=random.Random(12))
    play(strategy, [ROCK, None, SCISSORS, None] * 20 + [ROCK])
    assert {strategy.next_choice() for _ in range(30)} == set(ALL_CHOICES)


def test_markov_adapts_to_new_pattern() -> None:
    strategy = MarkovStrategy(rng=random.Random(13))
    play(strategy, islice(rps_cycler(), 300))
    reverse = islice(cycle((ROCK, SCISSORS, PAPER)), 1, 121)
    record = play(strategy, reverse)
    assert win_rate(record[-60:]) > 0.9


# --- copycat -------------------------------------------------------------------------------------


def test_copycat_plays_their_last_hand() -> None:
    opponent: list[Choice | None] = [PAPER, SCISSORS, None, ROCK, ROCK, PAPER, None, None]
    hands = [hand for hand, _ in play(CopycatStrategy(rng=random.Random(14)), opponent)]
    assert hands[1:] == [PAPER, SCISSORS, SCISSORS, ROCK, ROCK, PAPER, PAPER]


# --- win-stay, lose-shift ------------------------------------------------------------------------


@pytest.mark.parametrize("hand", ALL_CHOICES)
def test_wsls_stays_after_win(hand: Choice) -> None:
    strategy = WinStayLoseShiftStrategy(rng=random.Random(15))
    strategy.observe(hand, hand.beats)
    assert strategy.next_choice() is hand
    strategy.observe(hand, hand.beats)
    assert strategy.next_choice() is hand


@pytest.mark.parametrize("hand", ALL_CHOICES)
def test_wsls_shifts_after_loss(hand: Choice) -> None:
    strategy = WinStayLoseShiftStrategy(rng=random.Random(16))
    strategy.observe(hand, hand.beaten_by)
    assert strategy.next_choice() is hand.beaten_by.beaten_by


def test_wsls_missing_own_hand_is_a_loss() -> None:
    strategy = WinStayLoseShiftStrategy(rng=random.Random(17))
    strategy.observe(None, SCISSORS)
    assert strategy.next_choice() is ROCK


def test_wsls_skips_rounds_without_their_hand() -> None:
    strategy = WinStayLoseShiftStrategy(rng=random.Random(18))
    strategy.observe(PAPER, ROCK)
    strategy.observe(SCISSORS, None)
    assert strategy.next_choice() is PAPER


def test_wsls_random_after_draw() -> None:
    picks = set()
    for seed in range(30):
        strategy = WinStayLoseShiftStrategy(rng=random.Random(seed))
        strategy.observe(PAPER, ROCK)
        strategy.observe(ROCK, ROCK)
        picks.add(strategy.next_choice())
    assert picks == set(ALL_CHOICES)


def test_wsls_in_play() -> None:
    opponent: list[Choice | None] = [ROCK] * 20
    record = play(WinStayLoseShiftStrategy(rng=random.Random(19)), opponent)
    # Against a constant hand it settles on the winner within a couple of rounds and stays.
    assert all(outcome is Outcome.WIN for _, outcome in record[-15:])
