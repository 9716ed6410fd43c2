"""Spend over time (pure): the intervals of a series, and the points and series made from the
sums a store reads by interval (and by one column of the ledger, when split)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from outlay.policy.money import micros_to_usd
from outlay.policy.periods import HOUR_MS, iso
from outlay.values import value

Interval = Literal["hour", "day"]
INTERVAL_MS: dict[str, int] = {"hour": HOUR_MS, "day": 24 * HOUR_MS}
# what a series may be split by: a column every ledger row has (code: a refusal's)
SPLITS = ("vendor", "model", "agent", "code")
MAX_POINTS = 10_000  # per series: a range longer than this many intervals is refused


@value
class SeriesQuery:
    """A series of `scope` from the interval holding `since_ms` up to `until_ms` (excluded),
    by `interval`; `split`: one series per value of that column."""

    scope: str
    interval: Interval
    since_ms: int
    until_ms: int
    split: str | None = None

    @property
    def step(self) -> int:
        return INTERVAL_MS[self.interval]

    @property
    def first(self) -> int:
        """The start of the first interval (UTC hours and days are multiples of their
        length in unix ms)."""
        return self.since_ms - self.since_ms % self.step

    def starts(self) -> range:
        """The start of every interval in the range."""
        return range(self.first, self.until_ms, self.step)


def points_in(interval: Interval, since_ms: int, until_ms: int) -> int:
    """How many intervals a range holds."""
    step = INTERVAL_MS[interval]
    first = since_ms - since_ms % step
    return max(0, -(-(until_ms - first) // step))


# one sum a store read: (interval start, the split column's value or None, requests,
# refused, cost in micro-USD)
Sums = tuple[int, str | None, int, int, int]


def _points(starts: list[tuple[int, str]], sums: dict[int, list[int]]
            ) -> list[dict[str, Any]]:
    """A point per interval (`starts`: each start and its ISO text), zeros where `sums` has
    none."""
    points = []
    for start, text in starts:
        line = sums.get(start)
        points.append({"start": text, "requests": 0, "refused": 0, "cost_usd": "0"}
                      if line is None else
                      {"start": text, "requests": line[0], "refused": line[1],
                       "cost_usd": micros_to_usd(line[2])})
    return points


def series_answer(query: SeriesQuery, rows: Iterable[Sums]) -> dict[str, Any]:
    """The answer of GET /admin/v1/reports/series: every interval of the range, zeros
    included; with a split, also one series per value, dearest first."""
    total: dict[int, list[int]] = {}
    by_value: dict[str | None, dict[int, list[int]]] = {}
    for start, name, requests, refused, cost in rows:
        for sums in (total, by_value.setdefault(name, {})):
            line = sums.setdefault(start, [0, 0, 0])
            line[0] += requests
            line[1] += refused
            line[2] += cost
    starts = [(start, iso(start)) for start in query.starts()]
    answer: dict[str, Any] = {"scope": query.scope, "interval": query.interval,
                              "since": iso(query.first), "until": iso(query.until_ms),
                              "points": _points(starts, total)}
    if query.split is not None:
        def dearest(item: tuple[str | None, dict[int, list[int]]]) -> tuple[int, bool, str]:
            name, sums = item
            return -sum(s[2] for s in sums.values()), name is None, name or ""
        answer["split"] = query.split
        answer["series"] = [{query.split: name, "points": _points(starts, sums)}
                            for name, sums in sorted(by_value.items(), key=dearest)]
    return answer
