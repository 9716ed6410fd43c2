"""Where a budget's period will end (pure): the spend it reaches at the current period's run
rate, and when a hard cap is hit at that rate.

The run rate is the period's spend over the time elapsed in it, taken over at least a
hundredth of the period (`MIN_SHARE`): in its first moments a period has no rate to speak
of, and one call a second after midnight must not project a month of nothing but that
call's cost every second (nor divide by zero). A `total` budget never ends: no projection.
"""

from __future__ import annotations

from collections.abc import Iterable

from outlay.policy.model import Budget, Period
from outlay.policy.periods import period_bounds

MIN_SHARE = 100  # the run rate is measured over at least 1/MIN_SHARE of the period


def _elapsed(period: Period, now_ms: int) -> tuple[int, int, int] | None:
    """(elapsed time the rate is measured over, period length, period end), or None for a
    period that never ends."""
    start, end = period_bounds(period, now_ms)
    if end is None:
        return None
    length = end - start
    return max(now_ms - start, -(-length // MIN_SHARE)), length, end


def projected(period: Period, spent: int, now_ms: int) -> int | None:
    """The spend (micro-USD) the period reaches if it goes on as it went: spent / elapsed *
    length, rounded up; None for `total`."""
    measured = _elapsed(period, now_ms)
    if measured is None:
        return None
    elapsed, length, _ = measured
    return -(-spent * length // elapsed) if spent > 0 else spent


def exhausted_at(period: Period, cap: int, spent: int, now_ms: int) -> int | None:
    """When (unix ms) spend reaches `cap` at the period's run rate: now when it has; None
    when it will not before the period ends (or nothing is spent, or it never ends)."""
    measured = _elapsed(period, now_ms)
    if measured is None or spent <= 0:
        return None
    if spent >= cap:
        return now_ms
    elapsed, _, end = measured
    hit = now_ms + -(-(cap - spent) * elapsed // spent)
    return hit if hit < end else None


def first_exhausted(budgets: Iterable[tuple[Budget, int]], now_ms: int) -> int | None:
    """The earliest moment a hard, enforced cap is hit at its run rate (each budget with
    its period's spend), or None."""
    moments = [at for budget, spent in budgets
               if budget.mode == "hard" and budget.enforce == "enforce"
               and (at := exhausted_at(budget.period, budget.cap_micros, spent, now_ms))
               is not None]
    return min(moments, default=None)
