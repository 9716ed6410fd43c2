"""Events and approvals inside the embedded store's transactions: coalesced announcements
into the webhook outbox, budget warnings at settlement, and approvals a human decides."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from outlay.policy.decide import iso, percent
from outlay.policy.decision import ApprovalNeed, Event, KeyInfo
from outlay.policy.errors import ApprovalRequired
from outlay.policy.model import Policy
from outlay.policy.money import micros_to_usd
from outlay.state.base import NotFound, Ticket
from outlay.state.sqlite_outbox import enqueue


def announce(c: sqlite3.Connection, now: int, events: Iterable[Event]) -> int:
    """Put events in the outbox, each coalescing mark once; returns how many were new."""
    sent = 0
    for event in events:
        cur = c.execute("INSERT OR IGNORE INTO event_marks(mark, ts_ms) VALUES (?, ?)",
                        (event.coalesce, now))
        if cur.rowcount:
            enqueue(c, now, event.type, event.data)
            sent += 1
    return sent


def settlement_events(
    scope: str, policy: Policy, period: str, period_start: int, spent: int, key: KeyInfo | None,
) -> list[Event]:
    """budget.warning at warn_at, and budget.exceeded when a soft budget is crossed,
    judged on settled spend."""
    events = []
    for budget in policy.budgets:
        if budget.period != period:
            continue
        data = {
            "scope": scope, "agent_id": key.agent if key else None,
            "key_id": key.id if key else None, "period": period, "mode": budget.mode,
            "spent_usd": micros_to_usd(spent), "cap_usd": micros_to_usd(budget.cap_micros),
            "percent_used": percent(spent, budget.cap_micros),
        }
        mark = f"{scope}:{period}:{period_start}"
        if budget.warn_at is not None and spent >= budget.warn_at * budget.cap_micros:
            events.append(Event("budget.warning", {**data, "warn_at": budget.warn_at},
                                f"budget.warning:{mark}"))
        if budget.mode == "soft" and spent > budget.cap_micros:
            events.append(Event("budget.exceeded", data, f"budget.exceeded:{mark}"))
    return events


def open_approval(
    c: sqlite3.Connection, now: int, ticket: Ticket, key: KeyInfo, need: ApprovalNeed,
) -> ApprovalRequired:
    """Record an approval request (or reuse the pending one the agent named) and return
    the refusal that tells the agent which approval to wait for."""
    pending = None
    if ticket.approval_id:
        pending = c.execute("SELECT id FROM approvals WHERE id=? AND key_id=? AND "
                            "state='pending'", (ticket.approval_id, key.id)).fetchone()
    if pending:
        approval_id = pending[0]
    else:
        approval_id = "apr_" + secrets.token_hex(8)
        request = {"route": ticket.route, "vendor": ticket.call.vendor,
                   "model": ticket.call.model, "request_id": ticket.request_id}
        estimated = ticket.call.cost_micros or 0
        c.execute(
            "INSERT INTO approvals(id, created_ms, key_id, agent, scope, code, reason, "
            "estimated, request, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            (approval_id, now, key.id, key.agent, need.scope, need.code, need.reason,
             estimated, json.dumps(request)))
        announce(c, now, [Event("approval.requested", {
            "approval_id": approval_id, "scope": need.scope, "agent_id": key.agent,
            "key_id": key.id, "reason": need.reason, "code": need.code,
            "estimated_usd": micros_to_usd(estimated), **request,
        }, f"approval.requested:{approval_id}")])
    return ApprovalRequired(
        f"{need.reason} A human must approve this call: approval {approval_id} is pending. "
        f"Retry with the header X-Outlay-Approval: {approval_id} once it is approved.",
        need.wait_s, approval_id=approval_id, scope=need.scope, reason=need.code)


def use_approval(c: sqlite3.Connection, ticket: Ticket, key: KeyInfo) -> bool:
    """True when the ticket carries an approved, unused approval of this key."""
    if not ticket.approval_id:
        return False
    row = c.execute("SELECT state FROM approvals WHERE id=? AND key_id=?",
                    (ticket.approval_id, key.id)).fetchone()
    return row is not None and row[0] == "approved"


def mark_used(c: sqlite3.Connection, approval_id: str, request_id: str) -> None:
    c.execute("UPDATE approvals SET state='used', used_by=? WHERE id=? AND state='approved'",
              (request_id, approval_id))


def approval_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "state": row["state"], "created_at": iso(row["created_ms"]),
        "key_id": row["key_id"], "agent": row["agent"], "scope": row["scope"],
        "code": row["code"], "reason": row["reason"],
        "estimated_usd": micros_to_usd(row["estimated"]), "request": json.loads(row["request"]),
        "decided_at": None if row["decided_ms"] is None else iso(row["decided_ms"]),
        "note": row["note"], "used_by": row["used_by"],
    }


class _Store(Protocol):
    @property
    def conn(self) -> sqlite3.Connection: ...
    def clock(self) -> int: ...
    def tx(self) -> Any: ...


_COLUMNS = ("id", "created_ms", "key_id", "agent", "scope", "code", "reason", "estimated",
            "request", "state", "decided_ms", "note", "used_by")


class ApprovalsMixin:
    """The admin side of approvals: list, show, approve, deny."""

    async def list_approvals(self: _Store, state: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM approvals"  # noqa: S608
        newest = " ORDER BY created_ms DESC, rowid DESC"
        rows = (self.conn.execute(sql + " WHERE state=?" + newest, (state,))
                if state else self.conn.execute(sql + newest))
        return [approval_view(dict(zip(_COLUMNS, r, strict=True))) for r in rows]

    async def get_approval(self: _Store, approval_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM approvals WHERE id=?",  # noqa: S608
            (approval_id,)).fetchone()
        if row is None:
            raise NotFound(f"no approval {approval_id}")
        return approval_view(dict(zip(_COLUMNS, row, strict=True)))

    async def decide_approval(
        self: _Store, approval_id: str, approve: bool, note: str | None = None
    ) -> dict[str, Any]:
        now = self.clock()
        with self.tx() as c:
            row = c.execute("SELECT state, scope, agent, key_id FROM approvals WHERE id=?",
                            (approval_id,)).fetchone()
            if row is None:
                raise NotFound(f"no approval {approval_id}")
            if row[0] != "pending":
                raise ValueError(f"approval {approval_id} is already {row[0]}")
            state = "approved" if approve else "denied"
            c.execute("UPDATE approvals SET state=?, decided_ms=?, note=? WHERE id=?",
                      (state, now, note, approval_id))
            announce(c, now, [Event("approval.decided", {
                "approval_id": approval_id, "decision": state, "scope": row[1],
                "agent_id": row[2], "key_id": row[3], "note": note,
            }, f"approval.decided:{approval_id}")])
        return await ApprovalsMixin.get_approval(self, approval_id)
