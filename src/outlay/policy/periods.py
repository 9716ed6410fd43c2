"""Calendar budget periods in UTC: the start and end of the period holding a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from outlay.policy.model import Period

TOTAL_START = 0


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


HOUR_MS = 3_600_000


def iso(ms: int) -> str:
    """A moment in unix ms as ISO 8601 in UTC with a Z, as every answer writes times."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


_TOTAL = (TOTAL_START, None)
# the bounds each period was last asked for: the answer until that period turns (a
# decision asks for each budget's several times, and nearly every call is in the same
# period as the one before)
_current: dict[str, tuple[int, int]] = {}


def period_bounds(period: Period, now_ms: int) -> tuple[int, int | None]:
    """(start_ms, end_ms) of the period containing now_ms; `total` never ends (None)."""
    bounds = _current.get(period)
    if bounds is not None and bounds[0] <= now_ms < bounds[1]:
        return bounds
    if period == "total":
        return _TOTAL
    # every period boundary is an hour boundary in UTC, so the hour decides the answer
    bounds = _current[period] = _bounds(period, now_ms // HOUR_MS)
    return bounds


@lru_cache(maxsize=256)
def _bounds(period: Period, hour: int) -> tuple[int, int]:
    now = datetime.fromtimestamp(hour * 3600, tz=UTC)
    if period == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    elif period == "week":  # ISO weeks start on Monday
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else (
            start.replace(month=start.month + 1)
        )
    else:
        raise ValueError(f"unknown period {period!r}")
    return _ms(start), _ms(end)


def period_start(period: Period, now_ms: int) -> int:
    return period_bounds(period, now_ms)[0]
