"""The audit ledger in SQL (shared by the SQLite and PostgreSQL stores): rows, usage, reports."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import orjson

from outlay.policy.decide import iso
from outlay.policy.decision import KeyInfo
from outlay.policy.model import Period, Policy
from outlay.policy.money import micros_to_usd
from outlay.policy.periods import period_bounds
from outlay.policy.windows import WINDOW_SECONDS, WindowState, check
from outlay.state.base import Outcome, Ticket

_SCOPE_COLUMNS = {"key": "key_id", "agent": "agent", "group": "grp", "vendor": "vendor"}
GROUP_BY = {"key": "key_id", "agent": "agent", "group": "grp", "vendor": "vendor",
            "model": "model"}


def period_start_of(period: Period, now_ms: int) -> int:
    return period_bounds(period, now_ms)[0]


def scope_filter(scope: str) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause selecting the ledger rows charged to a scope."""
    if scope == "global":
        return "1=1", ()
    kind, _, name = scope.partition(":")
    return f"{_SCOPE_COLUMNS[kind]} = ?", (name,)


def insert(
    c: sqlite3.Connection, ticket: Ticket, key: KeyInfo | None, now: int, *, decision: str,
    code: str | None, scope: str | None, status: int | None, reserved: int, settlement: str,
    spent: int | None, cap: int | None,
) -> None:
    call = ticket.call
    c.execute(
        "INSERT INTO ledger(request_id, ts_ms, key_id, agent, grp, labels, vendor, model, route, "
        "decision, code, scope, status, reserved, cost, settlement, spent, cap) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
        (ticket.request_id, now, key.id if key else None, key.agent if key else None,
         key.group if key else None, orjson.dumps(dict(key.labels)).decode() if key else None,
         call.vendor, call.model_resolved or call.model, ticket.route, decision, code, scope,
         status, reserved, settlement, spent, cap),
    )


def settle(c: sqlite3.Connection, outcome: Outcome, cost: int, reserved: int) -> None:
    c.execute(
        "UPDATE ledger SET status=?, cost=?, settlement=?, model=COALESCE(?, model), "
        "spent=CASE WHEN spent IS NULL THEN NULL ELSE spent - ? + ? END WHERE request_id=?",
        (outcome.status or None, cost, outcome.settled, outcome.model, reserved, cost,
         outcome.reservation_id),
    )


_AUDIT_COLUMNS = (
    "request_id", "ts_ms", "key_id", "agent", "grp", "labels", "vendor", "model", "route",
    "decision", "code", "scope", "status", "reserved", "cost", "settlement", "spent", "cap",
)


def audit(c: sqlite3.Connection, scope: str | None, limit: int) -> list[dict[str, Any]]:
    where, args = scope_filter(scope) if scope else ("1=1", ())
    rows = c.execute(
        f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM ledger WHERE {where} "  # noqa: S608
        "ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
    return [audit_entry(dict(zip(_AUDIT_COLUMNS, row, strict=True))) for row in rows]


def audit_entry(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": r["request_id"],
        "time": iso(r["ts_ms"]),
        "key_id": r["key_id"],
        "agent": r["agent"],
        "group": r["grp"],
        "labels": json.loads(r["labels"]) if r["labels"] else {},
        "vendor": r["vendor"],
        "model": r["model"],
        "route": r["route"],
        "decision": r["decision"],
        "code": r["code"],
        "refused_by": r["scope"],
        "status": r["status"],
        "reserved_usd": micros_to_usd(r["reserved"]),
        "cost_usd": micros_to_usd(r["cost"]),
        "settlement": r["settlement"],
        "spent_usd": None if r["spent"] is None else micros_to_usd(r["spent"]),
        "cap_usd": None if r["cap"] is None else micros_to_usd(r["cap"]),
    }


def usage(
    c: sqlite3.Connection, scope: str, policy: Policy | None, now: int,
    windows: dict[str, WindowState],
) -> dict[str, Any]:
    out_windows = []
    budgets = []
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
            start, end = period_bounds(budget.period, now)
            row = c.execute(
                "SELECT spent, reserved FROM counters WHERE scope=? AND period=? "
                "AND period_start=?", (scope, budget.period, start)).fetchone()
            spent, reserved = row if row else (0, 0)
            budgets.append({
                "period": budget.period, "mode": budget.mode,
                "cap_usd": micros_to_usd(budget.cap_micros),
                "spent_usd": micros_to_usd(spent), "reserved_usd": micros_to_usd(reserved),
                "remaining_usd": micros_to_usd(max(0, budget.cap_micros - spent - reserved)),
                "resets_at": None if end is None else iso(end),
                "warn_at": budget.warn_at,
            })
    since = period_start_of("month", now)
    where, args = scope_filter(scope)
    by_model = c.execute(
        f"SELECT model, SUM(cost) FROM ledger WHERE {where} AND ts_ms >= ? "  # noqa: S608
        "AND cost > 0 AND model IS NOT NULL GROUP BY model ORDER BY model",
        (*args, since)).fetchall()
    by_vendor = c.execute(
        f"SELECT vendor, SUM(cost) FROM ledger WHERE {where} AND ts_ms >= ? "  # noqa: S608
        "AND cost > 0 GROUP BY vendor ORDER BY vendor", (*args, since)).fetchall()
    return {
        "scope": scope,
        "windows": out_windows,
        "budgets": budgets,
        "spend_since": iso(since),
        "spend_by_model": {m or "": micros_to_usd(v) for m, v in by_model},
        "spend_by_vendor": {m or "": micros_to_usd(v) for m, v in by_vendor},
    }


def report(c: sqlite3.Connection, group_by: str, since_ms: int | None) -> list[dict[str, Any]]:
    column = GROUP_BY[group_by]
    rows = c.execute(
        f"SELECT {column}, COUNT(*), SUM(decision='allowed'), SUM(decision!='allowed'), "  # noqa: S608
        "SUM(cost), SUM(settlement='unsettled') FROM ledger WHERE ts_ms >= ? "
        f"GROUP BY {column} ORDER BY SUM(cost) DESC", (since_ms or 0,)).fetchall()
    return [
        {group_by: name, "requests": n, "allowed": ok, "refused": refused,
         "cost_usd": micros_to_usd(cost or 0), "unsettled": unsettled}
        for name, n, ok, refused, cost, unsettled in rows
    ]
