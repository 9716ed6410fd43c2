"""A scope's usage as the admin API shows it, from values any backend reads: its policy, its
windows and budget counters, and its month's spend by model and vendor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.policy.decide import iso
from outlay.policy.model import Budget, Policy
from outlay.policy.money import micros_to_usd
from outlay.policy.periods import period_bounds
from outlay.policy.projection import first_exhausted, projected
from outlay.policy.windows import WINDOW_SECONDS, WindowState, check


def usage_view(
    scope: str, policy: Policy | None, now: int, windows: Mapping[str, WindowState],
    counters: Mapping[str, tuple[int, int]], since: int, by_model: Mapping[str | None, int],
    by_vendor: Mapping[str | None, int],
) -> dict[str, Any]:
    """`counters` maps a budget's counter (model.counter_name) to (spent, reserved) in its
    current period."""
    out_windows = []
    budgets = []
    spent_of: list[tuple[Budget, int]] = []
    if policy is not None:
        for name in WINDOW_SECONDS:
            limit = getattr(policy, name)
            if limit is None:
                continue
            seen = check(name, windows.get(name, WindowState()), limit, 0, now)
            out_windows.append({
                "name": name, "limit": limit, "used": seen.used,
                "remaining": max(0, limit - seen.used), "reset_at": iso(seen.reset_ms),
            })
        for budget in policy.budgets:
            end = period_bounds(budget.period, now)[1]
            spent, reserved = counters.get(budget.counter, (0, 0))
            spent_of.append((budget, spent))
            ahead = projected(budget.period, spent, now)
            budgets.append({
                "period": budget.period, "mode": budget.mode, "flow": budget.flow,
                "cap_usd": micros_to_usd(budget.cap_micros),
                "spent_usd": micros_to_usd(spent), "reserved_usd": micros_to_usd(reserved),
                "remaining_usd": micros_to_usd(max(0, budget.cap_micros - spent - reserved)),
                "resets_at": None if end is None else iso(end),
                "warn_at": budget.warn_at,
                # the spend the period reaches at its run rate (policy/projection.py)
                "projected_usd": None if ahead is None else micros_to_usd(ahead),
            })
    exhausted = first_exhausted(spent_of, now)
    return {
        "scope": scope,
        "windows": out_windows,
        "budgets": budgets,
        "spend_since": iso(since),
        "spend_by_model": {m or "": micros_to_usd(v) for m, v in by_model.items()},
        "spend_by_vendor": {m or "": micros_to_usd(v) for m, v in by_vendor.items()},
        "exhausted_at": None if exhausted is None else iso(exhausted),
    }


def tag_values_view(
    policy: Policy, count: int, values: list[str],
    spend: Mapping[str, Mapping[Any, tuple[int, int]]], name: str, limit: int,
) -> dict[str, Any]:
    """What a `tag:<name>=*` scope's usage adds: how many values it tracks this period (of
    `max_values`), and the `limit` values that spent most (by their first budget's period),
    each with its spend and what is left in each budget."""
    periods = [b.counter for b in policy.budgets]
    first = periods[0] if periods else None

    def spent_of(value: str) -> int:
        return spend.get(value, {}).get(first, (0, 0))[0] if first else 0

    top = sorted(values, key=lambda v: (-spent_of(v), v))[:limit]
    lines = []
    for value in top:
        budgets = []
        for budget in policy.budgets:
            spent, reserved = spend.get(value, {}).get(budget.counter, (0, 0))
            budgets.append({
                "period": budget.period, "flow": budget.flow,
                "cap_usd": micros_to_usd(budget.cap_micros),
                "spent_usd": micros_to_usd(spent), "reserved_usd": micros_to_usd(reserved),
                "remaining_usd": micros_to_usd(max(0, budget.cap_micros - spent - reserved)),
            })
        lines.append({"value": value, "scope": f"tag:{name}={value}", "budgets": budgets})
    return {"values_seen": count, "max_values": policy.values_limit, "values": lines}
