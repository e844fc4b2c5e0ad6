"""The rating maths: Glicko-2 as published, as a match applies it, and the bots' fixed ones."""

from __future__ import annotations

import attrs
import pytest
from glicko2.math.algorithm import update_rating

from game_server.core.match import Match, MatchRules, Seat
from game_server.core.rating import (
    BOT_RATINGS,
    NEW_RATING,
    PERIOD,
    SCALE,
    TAU,
    Rating,
    aged,
    bot_rating,
    rate,
)
from game_server.core.scoring import STAT_FIELDS, PlayerStats
from game_server.core.strategies import STRATEGY_NAMES
from protocol import Choice, Result


def glickman(shift: float) -> tuple[float, float, float]:
    """Glickman's worked example ("Example of the Glicko-2 system"), every rating moved by
    ``shift``: a 1500 / RD 200 / volatility 0.06 player beats 1400/30 and loses to 1550/100
    and 1700/300 in one rating period (tau 0.5). Returns rating, RD, volatility."""
    opponents = [
        ((1400 + shift - 1500) / SCALE, 30 / SCALE, 1.0),
        ((1550 + shift - 1500) / SCALE, 100 / SCALE, 0.0),
        ((1700 + shift - 1500) / SCALE, 300 / SCALE, 0.0),
    ]
    out = update_rating(shift / SCALE, 200 / SCALE, 0.06, opponents, tau=TAU)
    return out.mu * SCALE + 1500, out.phi * SCALE, out.sigma


def test_the_library_reproduces_glickmans_worked_example() -> None:
    rating, deviation, volatility = glickman(0.0)
    assert rating == pytest.approx(1464.06, abs=0.01)
    assert deviation == pytest.approx(151.52, abs=0.01)
    assert volatility == pytest.approx(0.05999, abs=0.00001)
    assert TAU == 0.5


@pytest.mark.parametrize("shift", [300.0, -400.0, 700.0])
def test_only_rating_differences_matter(shift: float) -> None:
    """Glicko-2 depends on differences of ratings only. The worked example alone cannot
    tell (its player sits at 1500, mu 0): an implementation that puts mu squared where the
    volatility step has phi squared (the ``glicko2`` package's) passes it and fails here."""
    rating, deviation, volatility = glickman(shift)
    base = glickman(0.0)
    assert rating - shift == pytest.approx(base[0], abs=1e-6)
    assert deviation == pytest.approx(base[1], abs=1e-6)
    assert volatility == pytest.approx(base[2], abs=1e-9)


def test_an_upset_far_from_1500_moves_volatility_as_at_1500() -> None:
    """Where the volatility really moves (a settled player loses ten times to a much
    weaker one), the step must not depend on where the pair sits on the scale."""

    def upset(base: float) -> Rating:
        player = Rating(base + 600, 50)
        for _ in range(10):
            player = rate(player, Rating(base, 50), 0.0)
        return player

    low, high = upset(900.0), upset(1500.0)
    assert high.volatility > 0.06  # the upsets do move it
    assert high.volatility == pytest.approx(low.volatility, abs=1e-9)
    assert high.rating - 600 == pytest.approx(low.rating, abs=1e-6)


def test_two_new_players_one_decisive_match() -> None:
    winner = rate(NEW_RATING, NEW_RATING, 1.0)
    loser = rate(NEW_RATING, NEW_RATING, 0.0)
    assert winner.rating == pytest.approx(1662.3, abs=0.1)
    assert loser.rating == pytest.approx(1337.7, abs=0.1)
    assert winner.deviation == pytest.approx(290.3, abs=0.1)
    assert winner.shown == 1662
    assert loser.shown == 1338


def test_a_draw_between_equals_moves_nothing_but_the_deviation() -> None:
    after = rate(NEW_RATING, NEW_RATING, 0.5)
    assert after.rating == pytest.approx(1500.0)
    assert after.deviation < NEW_RATING.deviation


def test_a_draw_against_a_stronger_player_gains() -> None:
    assert rate(Rating(1500, 100), Rating(1700, 100), 0.5).rating > 1500
    assert rate(Rating(1700, 100), Rating(1500, 100), 0.5).rating < 1700


def test_a_settled_rating_moves_less() -> None:
    settled = rate(Rating(1500, 60), Rating(1500, 60), 1.0).rating - 1500
    fresh = rate(Rating(1500, 350), Rating(1500, 60), 1.0).rating - 1500
    assert 0 < settled < fresh / 3


def test_idle_days_widen_the_deviation_up_to_a_new_players() -> None:
    rated = Rating(1600, 50, 0.06, rated_at=1000.0)
    assert aged(rated, 1000.0 + PERIOD - 1) == rated  # within a day: as it was
    one_day = aged(rated, 1000.0 + PERIOD)
    assert one_day.rating == 1600
    expected = ((50 / SCALE) ** 2 + 0.06**2) ** 0.5 * SCALE
    assert one_day.deviation == pytest.approx(expected)
    assert aged(rated, 1000.0 + 30 * PERIOD).deviation > one_day.deviation
    assert aged(rated, 1000.0 + 1e6 * PERIOD).deviation == 350.0
    assert aged(NEW_RATING, 1e9) == NEW_RATING  # never rated: nothing to age


def test_every_strategy_has_a_measured_rating_and_random_anchors_them() -> None:
    assert set(BOT_RATINGS) == set(STRATEGY_NAMES)
    assert BOT_RATINGS["random"].rating == 1500
    # Measured (bench/bot_ratings.py): the learners read habits, the copycat is read.
    assert BOT_RATINGS["frequency"].rating > BOT_RATINGS["random"].rating
    assert BOT_RATINGS["markov"].rating > BOT_RATINGS["random"].rating
    assert BOT_RATINGS["copycat"].rating < BOT_RATINGS["random"].rating
    assert bot_rating("nobody-measured-this").rating == 1500


def test_rating_json_round_trips_and_an_old_record_is_new() -> None:
    rating = Rating(1612.5, 80.25, 0.0601, 1700000000.5)
    assert Rating.from_json(rating.to_json()) == rating
    assert Rating.from_json(None) == NEW_RATING


def _finish(first: Seat, second: Seat, hands: tuple[Choice | None, Choice | None]) -> Match:
    """A best-of-1 match played with ``hands`` (None: no hand in time)."""
    match = Match("m", (first, second), MatchRules(best_of=1, round_seconds=1.0, afk_rounds=1))
    match.begin(0.0)
    for seat, hand in enumerate(hands):
        if hand is not None:
            match.choose(seat, 1, hand, True, 0.5)
    match.tick(1.0)
    assert match.over
    return match


def test_a_match_rates_both_humans_against_each_other_as_they_began() -> None:
    ann = Seat("ann", "Ann", PlayerStats(), rating=Rating(1700, 80))
    bob = Seat("bob", "Bob", PlayerStats(), rating=Rating(1400, 120))
    match = _finish(ann, bob, (Choice.SCISSORS, Choice.ROCK))  # the upset
    assert match.ratings_after == (
        rate(ann.rating, bob.rating, 0.0),
        rate(bob.rating, ann.rating, 1.0),
    )
    assert match.ratings_after[1].rating > 1400 + 30


def test_a_house_bots_rating_never_moves_and_rates_the_human() -> None:
    bot = Seat("bot_1", "Rocky", PlayerStats(), bot=True, rating=BOT_RATINGS["frequency"])
    ann = Seat("ann", "Ann", PlayerStats())
    match = _finish(ann, bot, (Choice.PAPER, Choice.ROCK))
    assert match.ratings_after[1] == BOT_RATINGS["frequency"]
    assert match.ratings_after[0] == rate(NEW_RATING, BOT_RATINGS["frequency"], 1.0)


def test_afk_counts_as_a_loss_and_both_away_as_a_draw() -> None:
    ann = Seat("ann", "Ann", PlayerStats())
    bob = Seat("bob", "Bob", PlayerStats())
    match = _finish(ann, bob, (None, Choice.ROCK))
    assert match.ratings_after[0].shown == 1338
    both_away = _finish(ann, bob, (None, None))
    assert both_away.winner is None
    assert both_away.ratings_after[0].rating == pytest.approx(1500.0)


def test_a_forfeit_counts_and_the_final_results_carry_it() -> None:
    ann = Seat("ann", "Ann", PlayerStats(), rating=Rating(1600, 100))
    bob = Seat("bob", "Bob", PlayerStats(), rating=Rating(1600, 100))
    match = Match("m", (ann, bob), MatchRules())
    match.begin(0.0)
    sends = match.forfeit(0)
    results = {send.seat: send.message for send in sends if isinstance(send.message, Result)}
    after = rate(ann.rating, bob.rating, 0.0)
    assert results[0].rating == after.shown
    assert results[0].rating_change == after.shown - 1600
    assert results[0].rating_change < 0 < (results[1].rating_change or 0)


def test_stamped_changes_only_when_it_was_rated() -> None:
    before = Rating(1612.5, 87.0, 0.059, 100.0)
    after = before.stamped(250.0)
    assert attrs.astuple(after) == (1612.5, 87.0, 0.059, 250.0)
    assert before.rated_at == 100.0


def test_a_stats_copy_has_every_field_and_is_its_own() -> None:
    # Distinct values per field, so a field the copy forgot would show as its default.
    stats = PlayerStats(**{name: 10 + i for i, name in enumerate(STAT_FIELDS)})
    copy = stats.copy()
    assert copy == stats
    assert copy is not stats
    copy.wins += 1
    assert stats.wins == 10 + STAT_FIELDS.index("wins")
