"""The leaderboards' periods (UTC+8 days, ISO weeks) and competition ranks."""

from __future__ import annotations

import datetime

from game_server.core.ladder import UTC8, Period, period_key, period_keys, ranks, shown


def at(*when: int) -> float:
    return datetime.datetime(*when, tzinfo=UTC8).timestamp()


def test_a_day_is_a_calendar_day_in_utc8_whatever_utc_says() -> None:
    # 2026-12-02 23:59 in UTC+8 is 15:59 UTC the same day; 00:00 the next is 16:00 UTC.
    assert period_keys(at(2026, 12, 2, 23, 59)) == ("d2026-12-02", "w2026-W49")
    assert period_keys(at(2026, 12, 3, 0, 0)) == ("d2026-12-03", "w2026-W49")
    utc_evening = datetime.datetime(2026, 12, 2, 16, 0, tzinfo=datetime.UTC).timestamp()
    assert period_key(Period.DAY, utc_evening) == "d2026-12-03"


def test_a_week_is_an_iso_week_monday_to_sunday() -> None:
    assert period_key(Period.WEEK, at(2026, 12, 6, 23, 59)) == "w2026-W49"  # Sunday
    assert period_key(Period.WEEK, at(2026, 12, 7, 0, 0)) == "w2026-W50"  # Monday
    # The ISO year: 2027-01-01 (a Friday) is still in 2026's week 53.
    assert period_key(Period.WEEK, at(2027, 1, 1, 12, 0)) == "w2026-W53"
    assert period_key(Period.ALL, at(2027, 1, 1, 12, 0)) is None


def test_ranks_share_ties_and_skip_after_them() -> None:
    assert ranks(1, 0, [9, 7, 7, 7, 4]) == [1, 2, 2, 2, 5]
    # A page from the middle: its first row ties with rows above the page.
    assert ranks(2, 2, [7, 7, 4, 4, 1]) == [2, 2, 5, 5, 7]


def test_shown_rounds_halves_up() -> None:
    assert [shown(r) for r in (1699.4, 1699.5, 1700.49, -0.5)] == [1699, 1700, 1700, 0]
