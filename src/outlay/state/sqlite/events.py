"""Events and approvals inside the embedded store's transactions: coalesced announcements
into the webhook outbox, budget warnings at settlement, and approvals a human decides."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, Protocol

from outlay.policy.decision import ApprovalNeed, Event, KeyInfo
from outlay.policy.errors import ApprovalRequired
from outlay.state.announcements import (
    APPROVAL_COLUMNS,
    approval_decided,
    approval_request,
    approval_requested,
    approval_required,
    approval_view,
    new_approval_id,
)
from outlay.state.base import NotFound, Ticket
from outlay.state.sqlite.outbox import enqueue


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
        approval_id = new_approval_id()
        request = approval_request(ticket)
        estimated = ticket.call.cost_micros or 0
        c.execute(
            "INSERT INTO approvals(id, created_ms, key_id, agent, scope, code, reason, "
            "estimated, request, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            (approval_id, now, key.id, key.agent, need.scope, need.code, need.reason,
             estimated, json.dumps(request)))
        announce(c, now, [approval_requested(approval_id, key, need, request, estimated)])
    return approval_required(need, approval_id)


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


class _Store(Protocol):
    @property
    def conn(self) -> sqlite3.Connection: ...
    def clock(self) -> int: ...
    def tx(self) -> Any: ...


class ApprovalsMixin:
    """The admin side of approvals: list, show, approve, deny."""

    async def list_approvals(self: _Store, state: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals"  # noqa: S608
        newest = " ORDER BY created_ms DESC, rowid DESC"
        rows = (self.conn.execute(sql + " WHERE state=?" + newest, (state,))
                if state else self.conn.execute(sql + newest))
        return [approval_view(dict(zip(APPROVAL_COLUMNS, r, strict=True))) for r in rows]

    async def get_approval(self: _Store, approval_id: str) -> dict[str, Any]:
        row = self.conn.execute(
            f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals WHERE id=?",  # noqa: S608
            (approval_id,)).fetchone()
        if row is None:
            raise NotFound(f"no approval {approval_id}")
        return approval_view(dict(zip(APPROVAL_COLUMNS, row, strict=True)))

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
            announce(c, now, [approval_decided(approval_id, state, row[1], row[2], row[3],
                                               note)])
        return await ApprovalsMixin.get_approval(self, approval_id)
