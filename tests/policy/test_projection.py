"""Projections at period boundaries (pure): the spend a period reaches at its run rate, and
when a hard cap is hit at that rate."""

from __future__ import annotations

from datetime import UTC, datetime

from outlay.policy.model import Budget
from outlay.policy.projection import exhausted_at, first_exhausted, projected

HOUR = 3_600_000
DAY = 24 * HOUR


def ms(*moment: int) -> int:
    return int(datetime(*moment, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_mid_month_the_rate_is_the_spend_over_the_days_gone() -> None:
    # June has 30 days: $10 in the first 15 projects $20
    assert projected("month", 10_000_000, ms(2025, 6, 16)) == 20_000_000
    # February 2024 has 29: $2.9 after 2.9 days projects $29
    assert projected("month", 2_900_000, ms(2024, 2, 1) + 29 * DAY // 10) == 29_000_000


def test_in_the_first_hour_of_the_month_the_rate_is_taken_over_a_hundredth_of_it() -> None:
    start = ms(2025, 1, 1)
    floor = 31 * DAY // 100  # January: 7.44 hours
    for now in (start, start + 1, start + HOUR - 1, start + floor):
        assert projected("month", 1_000, now) == 100_000, now  # never a division by zero
    assert projected("month", 1_000, start + 2 * floor) == 50_000
    assert projected("month", 0, start) == 0


def test_on_the_last_day_the_projection_nears_the_spend() -> None:
    last = ms(2025, 1, 31, 23, 59, 59)
    elapsed = last - ms(2025, 1, 1)
    assert projected("month", 5_000_000, last) == -(-5_000_000 * 31 * DAY // elapsed)
    assert 5_000_000 < projected("month", 5_000_000, last) <= 5_000_002
    # the first moment of the next month starts again
    assert projected("month", 0, ms(2025, 2, 1)) == 0


def test_a_week_runs_from_monday_and_a_day_from_midnight() -> None:
    # 2025-06-18 is a Wednesday: at noon, 2.5 of the week's 7 days are gone
    assert projected("week", 2_500, ms(2025, 6, 18, 12)) == 7_000
    assert projected("day", 1_000, ms(2025, 6, 18, 6)) == 4_000
    assert projected("hour", 1_000, ms(2025, 6, 18, 6, 15)) == 4_000


def test_a_total_budget_a_per_run_one_has_no_projection() -> None:
    assert projected("total", 5_000, ms(2025, 6, 18)) is None
    assert exhausted_at("total", 10_000, 9_999, ms(2025, 6, 18)) is None


def test_when_the_cap_is_hit() -> None:
    now = ms(2025, 6, 16)  # half of June gone: $4 of $10 reaches $10 after 22.5 more days
    assert exhausted_at("month", 10_000_000, 4_000_000, now) is None  # after June ends
    assert exhausted_at("month", 10_000_000, 6_000_000, now) == now + 10 * DAY
    assert exhausted_at("month", 10_000_000, 10_000_000, now) == now  # reached already
    assert exhausted_at("month", 10_000_000, 0, now) is None  # no rate, no end
    # at the first moment of a day, over a hundredth of it
    midnight = ms(2025, 6, 16)
    assert exhausted_at("day", 200, 100, midnight) == midnight + DAY // 100
    # a cap reached exactly at the period's end is not hit within it
    assert exhausted_at("day", 200, 100, midnight + DAY // 2) is None


def test_the_first_hard_enforced_cap_hit_is_the_answer() -> None:
    now = ms(2025, 6, 18, 12)
    day = Budget(10_000, "day")
    month = Budget(100_000, "month")
    soft = Budget(1_000, "day", mode="soft")
    shadow = Budget(1_000, "day", enforce="shadow")
    assert first_exhausted([(day, 6_000), (month, 60_000)], now) == now + 8 * HOUR
    assert first_exhausted([(soft, 900), (shadow, 900)], now) is None
    assert first_exhausted([], now) is None
