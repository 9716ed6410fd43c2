"""The audit ledger in SQL (shared by the SQLite and PostgreSQL stores): rows, usage, reports."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from outlay.policy.decide import iso
from outlay.policy.decision import KeyInfo
from outlay.policy.model import TAG_NAME, Period, Policy
from outlay.policy.money import micros_to_usd
from outlay.policy.periods import period_bounds
from outlay.policy.windows import WindowState
from outlay.state.base import Outcome, Ticket
from outlay.state.usage import usage_view

_SCOPE_COLUMNS = {"key": "key_id", "agent": "agent", "group": "grp", "vendor": "vendor"}
GROUP_BY = {"key": "key_id", "agent": "agent", "group": "grp", "vendor": "vendor",
            "model": "model"}


def group_column(group_by: str, sqlite: bool = True) -> str:
    """What a report groups by: a column, or (`label:<name>`) the value of a call's label.
    The name is a checked tag name (admin/reports.group_of): no quote can be in it."""
    if not group_by.startswith("label:"):
        return GROUP_BY[group_by]
    label = group_by.removeprefix("label:")
    if not TAG_NAME.fullmatch(label):
        raise ValueError(f"not a label name: {label!r}")
    return (f"json_extract(labels, '$.\"{label}\"')" if sqlite
            else f"(labels::jsonb ->> '{label}')")


def period_start_of(period: Period, now_ms: int) -> int:
    return period_bounds(period, now_ms)[0]


def scope_filter(scope: str, mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause selecting the ledger rows charged to a scope; `mark` is the driver's
    placeholder (SQLite's ?, psycopg's %s)."""
    if scope == "global":
        return "1=1", ()
    kind, _, name = scope.partition(":")
    if kind == "tag":  # a label of the call (its key's, or a tag it carried)
        label, _, value = name.partition("=")
        # the label's name is a checked tag name (state/policy/model.TAG_NAME): no quote
        column = (f"json_extract(labels, '$.\"{label}\"')" if mark == "?"
                  else f"(labels::jsonb ->> {mark})")
        args: tuple[Any, ...] = () if mark == "?" else (label,)
        if value == "*":
            return f"{column} IS NOT NULL", args
        return f"{column} = {mark}", (*args, value)
    return f"{_SCOPE_COLUMNS[kind]} = {mark}", (name,)


# SQLite: every ledger row carries the sequence number its decision was given (see
# sqlite_mirror); an admitted call's row waits in its reservation until it is settled and
# moved (MOVE_SETTLED), a refusal's is written at once
INSERT_ROW = (
    "INSERT INTO ledger(seq, request_id, ts_ms, key_id, agent, grp, labels, vendor, model, "
    "route, flow, decision, code, scope, status, reserved, cost, settlement, spent, cap, "
    "held, estimated, waited_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)")
HOLD_ROW = (
    "INSERT INTO reservations(id, created_ms, lease_ms, worker, amount, tokens, holds, tpm, "
    "parallel, seq, key_id, agent, grp, labels, vendor, model, route, flow, code, spent, "
    "cap, replay_of, waited_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# a reservation's call about to be sent (schema version 11): its number in a table of its
# own rather than a flag in its row, so that a batch's marks append a few bytes each to one
# page of `forwarded_calls` (a rowid table: an append splits no neighbour) instead of
# rewriting every page their reservations are on
FORWARD_MARK = ("INSERT OR IGNORE INTO forwarded_calls(seq) "
                "SELECT seq FROM reservations WHERE id = ? AND seq IS NOT NULL")
SETTLE_ROW = (
    "UPDATE reservations SET status=?, cost=?, settlement=?, model=COALESCE(?, model), "
    "spent=CASE WHEN spent IS NULL THEN NULL ELSE spent - ? + ? END WHERE id=?")
MOVE_SETTLED = (
    "INSERT INTO ledger(seq, request_id, ts_ms, key_id, agent, grp, labels, vendor, model, "
    "route, decision, code, scope, status, reserved, cost, settlement, spent, cap, replay_of, "
    "waited_ms, flow) "
    "SELECT seq, id, created_ms, key_id, agent, grp, labels, vendor, model, route, 'allowed', "
    "code, NULL, status, amount, cost, settlement, spent, cap, replay_of, waited_ms, flow "
    "FROM reservations "
    "WHERE settlement IS NOT NULL ORDER BY seq")
# what a move leaves behind: the moved rows, then the marks of rows no longer held (the
# reservations left, the calls in flight, are fewer to look through than those moved)
DROP_MOVED = (
    "DELETE FROM reservations WHERE settlement IS NOT NULL",
    "DELETE FROM forwarded_calls WHERE seq NOT IN "
    "(SELECT seq FROM reservations WHERE seq IS NOT NULL)")
# the highest row number given: the ledger's AUTOINCREMENT entry (a row inserted with its
# number raises it) or a reservation's not yet moved
LAST_SEQ = ("SELECT max(ifnull((SELECT seq FROM sqlite_sequence WHERE name='ledger'), 0), "
            "ifnull((SELECT max(seq) FROM reservations), 0))")
# the rows still in reservations, as ledger rows: every SQLite read takes both
HELD_ROWS = (
    "(SELECT seq, id AS request_id, created_ms AS ts_ms, key_id, agent, grp, labels, vendor, "
    "model, route, 'allowed' AS decision, code, NULL AS scope, status, amount AS reserved, "
    "COALESCE(cost, 0) AS cost, COALESCE(settlement, 'pending') AS settlement, spent, cap, "
    "replay_of, waited_ms, NULL AS held, NULL AS estimated, flow FROM reservations)")
SOURCES = ("ledger", HELD_ROWS)


@contextlib.contextmanager
def snapshot(c: sqlite3.Connection) -> Iterator[None]:
    """Reads of both SOURCES that see one state of the file: a move committed between two of
    them would otherwise hide its rows from both."""
    if c.in_transaction:
        yield
        return
    c.execute("BEGIN")
    try:
        yield
    finally:
        c.execute("COMMIT")


def call_columns(ticket: Ticket, key: KeyInfo | None,
                 labels: Mapping[str, str] | None = None) -> tuple[Any, ...]:
    """key_id, agent, grp, labels, vendor, model, route, flow: what a ledger row says of a
    call (flow: NULL for spend, 'out' for money moved out). `labels`: the call's
    (ticket.labels), when the caller has them already."""
    call = ticket.call
    if key is not None and labels is None:
        labels = ticket.labels(key)
    return (key.id if key else None, key.agent if key else None, key.group if key else None,
            orjson.dumps(labels).decode() if key else None,
            call.vendor, call.model_resolved or call.model, ticket.route, row_flow(call.flow))


def row_flow(flow: str) -> str | None:
    """A ledger row's `flow`: NULL for spend (every row written before flows existed is
    spend), the flow's name otherwise."""
    return None if flow == "spend" else flow


# the rows whose cost is spend (money out is reported apart, and counts toward its own
# budgets only)
SPEND = "flow IS NULL"


def insert_row(
    ticket: Ticket, key: KeyInfo | None, now: int, *, decision: str, code: str | None,
    scope: str | None, status: int | None, reserved: int, settlement: str, spent: int | None,
    cap: int | None, held: int | None = None, estimated: int | None = None,
) -> tuple[Any, ...]:
    """The values of INSERT_ROW for one call, its sequence number left out."""
    return (ticket.request_id, now, *call_columns(ticket, key), decision, code, scope,
            status, reserved, settlement, spent, cap, held, estimated, ticket.waited_ms or None)


def settle_row(outcome: Outcome, cost: int, reserved: int) -> tuple[Any, ...]:
    """The values of SETTLE_ROW for one settlement."""
    return (outcome.status or None, cost, outcome.settled, outcome.model, reserved, cost,
            outcome.reservation_id)


AUDIT_COLUMNS = (
    "request_id", "ts_ms", "key_id", "agent", "grp", "labels", "vendor", "model", "route",
    "decision", "code", "scope", "status", "reserved", "cost", "settlement", "spent", "cap",
    "replay_of", "waited_ms", "held", "estimated", "flow",
)


_TS_AT = 1 + AUDIT_COLUMNS.index("ts_ms")  # in a row of audit's query: seq, then the columns


def audit(c: sqlite3.Connection, scope: str | None, limit: int) -> list[dict[str, Any]]:
    where, args = scope_filter(scope) if scope else ("1=1", ())
    rows: list[tuple[Any, ...]] = []
    with snapshot(c):
        for source in SOURCES:
            rows += c.execute(
                f"SELECT seq, {', '.join(AUDIT_COLUMNS)} FROM {source} WHERE {where} "  # noqa: S608
                "ORDER BY ts_ms DESC, seq DESC LIMIT ?", (*args, limit)).fetchall()
    # newest first by the time of the decision, then by the order the rows were recorded
    rows.sort(key=lambda r: (r[_TS_AT], r[0] or 0), reverse=True)
    return [audit_entry(dict(zip(AUDIT_COLUMNS, row[1:], strict=True)))
            for row in rows[:limit]]


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
        # a settlement that charged more than it held: the bill, above a bound that was wrong
        "overrun_usd": (micros_to_usd(r["cost"] - r["reserved"])
                        if r["settlement"] in ("settled", "settled_estimate")
                        and r["cost"] > r["reserved"] else None),
        "spent_usd": None if r["spent"] is None else micros_to_usd(r["spent"]),
        "cap_usd": None if r["cap"] is None else micros_to_usd(r["cap"]),
        "replay_of": r["replay_of"],
        "waited_ms": r["waited_ms"] or 0,
        # what the cost is: spend, or money moved out of the account (§2.3)
        "flow": r["flow"] or "spend",
        "held_usd": None if r["held"] is None else micros_to_usd(r["held"]),
        "estimated_usd": None if r["estimated"] is None else micros_to_usd(r["estimated"]),
    }


def usage(
    c: sqlite3.Connection, scope: str, policy: Policy | None, now: int,
    windows: dict[str, WindowState],
) -> dict[str, Any]:
    counters: dict[str, tuple[int, int]] = {}
    since = period_start_of("month", now)
    with snapshot(c):
        for budget in policy.budgets if policy is not None else ():
            counters[budget.counter] = counter(
                c, scope, budget.counter, period_start_of(budget.period, now))
        by_model, by_vendor = spend_by(c, scope, since)
    return usage_view(scope, policy, now, windows, counters, since, by_model, by_vendor)


COUNTER_ROW = ("SELECT spent, reserved FROM counters WHERE scope=? AND period=? "
               "AND period_start=?")


def counter(c: sqlite3.Connection, scope: str, period: str, start: int) -> tuple[int, int]:
    """(spent, reserved) of a scope's budget counter (`period`: model.counter_name) in the
    period starting at `start` (SQLite)."""
    row = c.execute(COUNTER_ROW, (scope, period, start)).fetchone()
    return (row[0], row[1]) if row else (0, 0)


def spend_by(c: sqlite3.Connection, scope: str, since: int
             ) -> tuple[dict[str | None, int], dict[str | None, int]]:
    """A scope's spend since `since`, by model and by vendor (what was given back, by a
    `credit` row of negative cost, taken off; money moved out is not spend)."""
    where, args = scope_filter(scope)
    by_model: dict[str | None, int] = {}
    by_vendor: dict[str | None, int] = {}
    with snapshot(c):
        for source in SOURCES:
            for model, cost in c.execute(
                    f"SELECT model, SUM(cost) FROM {source} WHERE {where} AND ts_ms >= ? "  # noqa: S608
                    f"AND cost != 0 AND {SPEND} AND model IS NOT NULL GROUP BY model",
                    (*args, since)):
                by_model[model] = by_model.get(model, 0) + cost
            for vendor, cost in c.execute(
                    f"SELECT vendor, SUM(cost) FROM {source} WHERE {where} AND ts_ms >= ? "  # noqa: S608
                    f"AND cost != 0 AND {SPEND} GROUP BY vendor", (*args, since)):
                by_vendor[vendor] = by_vendor.get(vendor, 0) + cost
    return (dict(sorted(by_model.items(), key=_by_name)),
            dict(sorted(by_vendor.items(), key=_by_name)))


def _by_name(item: tuple[str | None, int]) -> tuple[bool, str]:
    return item[0] is None, item[0] or ""


def report(c: sqlite3.Connection, group_by: str, since_ms: int | None) -> list[dict[str, Any]]:
    column = group_column(group_by)
    lines: dict[Any, list[int]] = {}
    with snapshot(c):
        for source in SOURCES:
            for name, *counts in c.execute(
                    f"SELECT {column}, SUM(decision!='credit'), SUM(decision='allowed'), "  # noqa: S608
                    "SUM(decision IN ('refused', 'invalid')), "
                    f"SUM(CASE WHEN {SPEND} THEN cost ELSE 0 END), "
                    "SUM(settlement='unsettled'), SUM(settlement='settled_estimate'), "
                    f"SUM(CASE WHEN {SPEND} THEN 0 ELSE cost END) "
                    f"FROM {source} WHERE ts_ms >= ? GROUP BY {column}", (since_ms or 0,)):
                line = lines.setdefault(name, [0] * len(counts))
                for i, n in enumerate(counts):
                    line[i] += n or 0
    ordered = sorted(lines.items(), key=lambda item: item[1][3], reverse=True)
    return [report_line(group_by, (name, *counts)) for name, counts in ordered]


def report_line(group_by: str, row: tuple[Any, ...]) -> dict[str, Any]:
    """One line of a report from its row: the group, requests, allowed, refused, cost (spend),
    unsettled (charged their whole reservation), estimated (charged what Outlay counted) and
    money moved out of the account (refunds, transfers, payouts: not in the cost)."""
    name, n, ok, refused, cost, unsettled, estimated, *out = row
    return {group_by: name, "requests": n, "allowed": ok, "refused": refused,
            "cost_usd": micros_to_usd(cost or 0), "unsettled": unsettled,
            "estimated": estimated or 0, "out_usd": micros_to_usd((out[0] if out else 0) or 0)}
