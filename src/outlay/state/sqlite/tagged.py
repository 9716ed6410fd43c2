"""The embedded store's views of a call's scopes, tag scopes included: each scope's policy in
force (a tag value's own, else its `tag:<name>=*`'s) and live counters; and the values a
`*` policy tracks, bounded by its `max_values`, written in the decision's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from outlay.policy.decision import NOTHING, Counter, ScopeView
from outlay.policy.errors import RateLimited
from outlay.policy.model import Policy
from outlay.policy.pacing import Slot
from outlay.policy.periods import period_bounds
from outlay.policy.rules import rules_of
from outlay.policy.tags import (
    resolve,
    split,
    tag_scope,
    too_many_values,
    tracked,
    tracking_period,
    with_wildcards,
)
from outlay.policy.windows import WindowState
from outlay.state import ledger_sql
from outlay.state.sqlite.mirror import Mirror
from outlay.state.usage import tag_values_view

KNOWN_KEPT = 200_000  # values known to be tracked, kept by a worker before it starts over

NewValue = tuple[str, int, str]  # name, period start, value


def policies_in_force(mirror: Mirror, c: sqlite3.Connection, scopes: tuple[str, ...]
                      ) -> dict[str, Policy]:
    return resolve(scopes, mirror.policies_of(c, with_wildcards(scopes)))


def views(mirror: Mirror, c: sqlite3.Connection, scopes: tuple[str, ...],
          policies: Mapping[str, Policy], now: int) -> list[ScopeView]:
    out = []
    for scope in scopes:
        policy = policies.get(scope)
        if policy is None:
            out.append(_bare(scope))
            continue
        rules = rules_of(policy)
        counters = {}
        for period, name in rules.counters:
            start = period_bounds(period, now)[0]
            spent, reserved = mirror.counter(c, (scope, name, start))
            counters[name] = Counter(start, spent, reserved)
        out.append(ScopeView(
            scope, policy,
            mirror.windows_of(c, scope) if rules.windows else NOTHING,
            mirror.inflight_of(c, scope) if policy.max_parallel is not None else 0,
            counters))
    return out


@lru_cache(maxsize=1024)
def _bare(scope: str) -> ScopeView:
    """The view of a scope without a policy: nothing to read, the same on every call (a
    call's vendor and `global` are usually such scopes)."""
    return ScopeView(scope, None, NOTHING, 0, NOTHING)


def slot_view(mirror: Mirror, c: sqlite3.Connection, slot: Slot) -> ScopeView:
    """An endpoint's view: its windows (its pause among them) and calls in flight."""
    policy = slot.policy
    return ScopeView(slot.scope, policy, mirror.windows_of(c, slot.scope),
                     mirror.inflight_of(c, slot.scope) if policy.max_parallel is not None else 0)


class TagValues:
    """The values each `*` policy tracks in its tracking period: a value seen before passes,
    a new one is counted, or refused past `max_values`."""

    def __init__(self) -> None:
        # values read as tracked from the file: committed, so they stay tracked all period
        self._known: set[NewValue] = set()

    def new_values(self, c: sqlite3.Connection, scopes: tuple[str, ...],
                   own: Mapping[str, Policy], now: int) -> list[NewValue] | RateLimited:
        """The values this call would start tracking, or the refusal of one too many.
        `own`: the policies set on the scopes and their `*`s (not resolved)."""
        out: list[NewValue] = []
        for name, value in tracked(scopes, own):
            policy = own[tag_scope(name, "*")]
            start = period_bounds(tracking_period(policy), now)[0]
            entry = (name, start, value)
            if entry in self._known:
                continue
            if c.execute("SELECT 1 FROM tag_values WHERE name=? AND period_start=? AND value=?",
                         entry).fetchone():
                if len(self._known) >= KNOWN_KEPT:
                    self._known.clear()
                self._known.add(entry)
                continue
            row = c.execute("SELECT n FROM tag_value_counts WHERE name=? AND period_start=?",
                            (name, start)).fetchone()
            if row is not None and row[0] >= policy.values_limit:
                return too_many_values(name, policy.values_limit)
            out.append(entry)
        return out

    @staticmethod
    def add(c: sqlite3.Connection, values: list[NewValue]) -> None:
        """Track the values of an admitted call (in its transaction); the periods before
        go."""
        for name, start, value in values:
            c.execute("INSERT INTO tag_values(name, period_start, value) VALUES (?, ?, ?)",
                      (name, start, value))
            if c.execute("UPDATE tag_value_counts SET n = n + 1 WHERE name=? "
                         "AND period_start=?", (name, start)).rowcount == 0:
                c.execute("INSERT INTO tag_value_counts(name, period_start, n) "
                          "VALUES (?, ?, 1)", (name, start))
                c.execute("DELETE FROM tag_values WHERE name=? AND period_start<?",
                          (name, start))
                c.execute("DELETE FROM tag_value_counts WHERE name=? AND period_start<?",
                          (name, start))


def values_seen(c: sqlite3.Connection, name: str, policy: Policy, now: int
                ) -> tuple[int, list[str], dict[str, dict[str, tuple[int, int]]]]:
    """How many values a `*` policy tracks this period, which, and the (spent, reserved)
    of each value's scope in each budget period of the policy."""
    start = period_bounds(tracking_period(policy), now)[0]
    row = c.execute("SELECT n FROM tag_value_counts WHERE name=? AND period_start=?",
                    (name, start)).fetchone()
    spend: dict[str, dict[str, tuple[int, int]]] = {}
    for period, counter in {(b.period, b.counter) for b in policy.budgets}:
        pstart = ledger_sql.period_start_of(period, now)
        for scope, spent, reserved in c.execute(
                "SELECT scope, spent, reserved FROM counters WHERE scope >= ? AND scope < ? "
                "AND period=? AND period_start=?",
                (f"tag:{name}=", f"tag:{name}>", counter, pstart)):
            spend.setdefault(scope.partition("=")[2], {})[counter] = (spent, reserved)
    values = [v for (v,) in c.execute(
        "SELECT value FROM tag_values WHERE name=? AND period_start=?", (name, start))]
    return (row[0] if row else 0), values, spend


def usage(c: sqlite3.Connection, scope: str, policy: Policy | None, now: int,
          windows: dict[str, WindowState], values_limit: int) -> dict[str, Any]:
    """A scope's usage; for `tag:<name>=*`, with the values it tracks and their spend."""
    view = ledger_sql.usage(c, scope, policy, now, windows)
    parts = split(scope)
    if parts is not None and parts[1] == "*" and policy is not None:
        count, values, spend = values_seen(c, parts[0], policy, now)
        view.update(tag_values_view(policy, count, values, spend, parts[0], values_limit))
    return view
