"""Budget periods: UTC calendar hours, days, ISO weeks (Monday) and months; `total` never ends."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from outlay.policy.model import Period
from outlay.policy.periods import HOUR_MS, _bounds, period_bounds, period_start


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       milli: int = 0) -> int:
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + milli


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        # the last millisecond of January is still January; the first of February is not
        (ms(2025, 1, 31, 23, 59, 59, 999), ms(2025, 1, 1), ms(2025, 2, 1)),
        (ms(2025, 2, 1), ms(2025, 2, 1), ms(2025, 3, 1)),
        (ms(2025, 1, 1), ms(2025, 1, 1), ms(2025, 2, 1)),
        # December ends in January of the next year
        (ms(2024, 12, 15, 8), ms(2024, 12, 1), ms(2025, 1, 1)),
        (ms(2024, 12, 31, 23, 59, 59, 999), ms(2024, 12, 1), ms(2025, 1, 1)),
        # leap February has 29 days, others 28
        (ms(2024, 2, 29, 12), ms(2024, 2, 1), ms(2024, 3, 1)),
        (ms(2024, 2, 29, 23, 59, 59, 999), ms(2024, 2, 1), ms(2024, 3, 1)),
        (ms(2024, 3, 1), ms(2024, 3, 1), ms(2024, 4, 1)),
        (ms(2023, 2, 28, 23, 59, 59, 999), ms(2023, 2, 1), ms(2023, 3, 1)),
        (ms(2024, 4, 30, 23), ms(2024, 4, 1), ms(2024, 5, 1)),
    ],
)
def test_month(now: int, start: int, end: int) -> None:
    assert period_bounds("month", now) == (start, end)


@pytest.mark.parametrize(
    ("year", "month", "days"),
    [(2024, 2, 29), (2023, 2, 28), (2100, 2, 28), (2000, 2, 29), (2024, 1, 31), (2024, 4, 30)],
)
def test_month_lengths(year: int, month: int, days: int) -> None:
    start, end = period_bounds("month", ms(year, month, 10))
    assert end is not None
    assert end - start == days * 86_400_000


@pytest.mark.parametrize(
    ("now", "start"),
    [
        (ms(2024, 3, 18), ms(2024, 3, 18)),  # a Monday, at midnight
        (ms(2024, 3, 17, 23, 59, 59, 999), ms(2024, 3, 11)),  # the Sunday before it
        (ms(2024, 3, 14, 12), ms(2024, 3, 11)),  # a Thursday
        (ms(2025, 1, 1, 9), ms(2024, 12, 30)),  # a week across the new year
        (ms(2024, 3, 1), ms(2024, 2, 26)),  # and across a leap day
    ],
)
def test_week_starts_on_monday(now: int, start: int) -> None:
    assert period_bounds("week", now) == (start, start + 7 * 86_400_000)
    assert datetime.fromtimestamp(start / 1000, tz=UTC).weekday() == 0


@pytest.mark.parametrize(
    ("period", "before", "boundary"),
    [
        ("hour", ms(2024, 3, 14, 12, 59, 59, 999), ms(2024, 3, 14, 13)),
        ("hour", ms(2024, 12, 31, 23, 59, 59, 999), ms(2025, 1, 1)),
        ("day", ms(2024, 3, 14, 23, 59, 59, 999), ms(2024, 3, 15)),
        ("day", ms(2024, 2, 28, 23, 59, 59, 999), ms(2024, 2, 29)),
        ("week", ms(2024, 3, 17, 23, 59, 59, 999), ms(2024, 3, 18)),
        ("month", ms(2024, 1, 31, 23, 59, 59, 999), ms(2024, 2, 1)),
    ],
)
def test_boundary_millisecond_belongs_to_the_next_period(
    period: Period, before: int, boundary: int
) -> None:
    assert period_bounds(period, before)[1] == boundary
    assert period_bounds(period, boundary)[0] == boundary
    assert period_bounds(period, boundary + 1)[0] == boundary


def test_hour_and_day() -> None:
    now = ms(2024, 3, 14, 12, 34, 56, 789)
    assert period_bounds("hour", now) == (ms(2024, 3, 14, 12), ms(2024, 3, 14, 13))
    assert period_bounds("day", now) == (ms(2024, 3, 14), ms(2024, 3, 15))


def test_total_never_ends() -> None:
    assert period_bounds("total", ms(2024, 3, 14)) == (0, None)
    assert period_start("total", ms(2030, 1, 1)) == 0


def test_unknown_period() -> None:
    with pytest.raises(ValueError, match="unknown period"):
        period_bounds("year", ms(2024, 1, 1))  # type: ignore[arg-type]


@pytest.fixture
def local_time_far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_far_from_utc")
def test_periods_are_utc_whatever_the_local_zone() -> None:
    now = ms(2024, 1, 31, 20)  # already 1 February in Kiritimati
    assert period_bounds("month", now) == (ms(2024, 1, 1), ms(2024, 2, 1))
    assert period_bounds("day", now) == (ms(2024, 1, 31), ms(2024, 2, 1))


@pytest.mark.parametrize("period", ["hour", "day", "week", "month"])
def test_periods_tile_time(period: Period) -> None:
    rng = random.Random(7)
    for _ in range(500):
        now = rng.randrange(ms(1999, 1, 1), ms(2101, 1, 1))
        start, end = period_bounds(period, now)
        assert end is not None
        assert start <= now < end
        assert period_bounds(period, start) == (start, end)
        assert period_bounds(period, end - 1) == (start, end)
        assert period_bounds(period, end)[0] == end
        assert period_start(period, now) == start


def test_the_bounds_kept_until_a_period_turns_are_the_bounds_worked_out() -> None:
    """Moments back and forth across turns of every period: the bounds answered while a
    period's last bounds are kept are those worked out afresh."""
    rng = random.Random(11)
    now = ms(2024, 12, 31, 22)
    for _ in range(3_000):
        now += rng.choice((1, 999, HOUR_MS - 1, -HOUR_MS, 86_400_000, -7 * 86_400_000))
        for period in ("hour", "day", "week", "month"):
            assert period_bounds(period, now) == _bounds(period, now // HOUR_MS)
        assert period_bounds("total", now) == (0, None)
