"""Approvals in the embedded store (SPEC §2.5 on_breach: require_approval): opened by a refused
call inside its decision's transaction, decided by a human, then used by exactly one call,
in the transaction that admits it (SQLite's write lock makes the use atomic across workers).

The records, events and refusal are those of the replicated store (`announcements.py`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Protocol

from outlay.policy.approvals import Approval
from outlay.policy.decision import ApprovalNeed, KeyInfo
from outlay.policy.errors import ApprovalRequired
from outlay.state.announcements import (
    APPROVAL_COLUMNS,
    approval_decided,
    approval_of,
    approval_request,
    approval_requested,
    approval_required,
    approval_view,
    approval_views,
    breaches_text,
    new_approval_id,
    stored_states,
)
from outlay.state.base import NotFound, Ticket
from outlay.state.sqlite.events import announce

_SELECT = f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals"  # noqa: S608 (fixed columns)


def read_approval(c: sqlite3.Connection, approval_id: str) -> Approval | None:
    row = c.execute(_SELECT + " WHERE id=?", (approval_id,)).fetchone()
    return None if row is None else approval_of(dict(zip(APPROVAL_COLUMNS, row, strict=True)))


def open_approval(
    c: sqlite3.Connection, now: int, ticket: Ticket, key: KeyInfo, need: ApprovalNeed,
    ttl_ms: int,
) -> ApprovalRequired:
    """Record an approval request (or reuse the pending one the agent named, which `judge`
    found to be for this very call) and return the refusal naming the approval to wait for."""
    breaches = breaches_text(need)
    if ticket.approval_id:
        # the breaches are those of now: a human has not looked yet
        reused = c.execute("UPDATE approvals SET breaches=? WHERE id=? AND key_id=? AND "
                           "state='pending' AND expires_ms > ?",
                           (breaches, ticket.approval_id, key.id, now)).rowcount
        if reused:
            return approval_required(need, ticket.approval_id)
    approval_id = new_approval_id()
    request = approval_request(ticket)
    estimated = ticket.call.cost_micros or 0
    c.execute(
        "INSERT INTO approvals(id, created_ms, key_id, agent, scope, code, reason, estimated, "
        "request, state, breaches, expires_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (approval_id, now, key.id, key.agent, need.scope, need.code, need.reason, estimated,
         json.dumps(request), breaches, now + ttl_ms))
    announce(c, now, [approval_requested(approval_id, key, need, request, estimated)])
    return approval_required(need, approval_id)


def mark_used(c: sqlite3.Connection, approval_id: str, request_id: str, now: int) -> None:
    """The approval let its call through: it lets no other."""
    c.execute("UPDATE approvals SET state='used', used_by=?, used_ms=? "
              "WHERE id=? AND state='approved'", (request_id, now, approval_id))


class _Store(Protocol):
    @property
    def conn(self) -> sqlite3.Connection: ...
    def clock(self) -> int: ...
    def tx(self) -> Any: ...


class ApprovalsMixin:
    """The admin side of approvals: list, show, approve, deny."""

    async def list_approvals(self: _Store, state: str | None = None) -> list[dict[str, Any]]:
        newest = " ORDER BY created_ms DESC, rowid DESC"
        states = stored_states(state)
        if states is None:
            rows = self.conn.execute(_SELECT + newest).fetchall()
        else:
            marks = ", ".join("?" * len(states))
            rows = self.conn.execute(_SELECT + f" WHERE state IN ({marks})" + newest,
                                     states).fetchall()
        return approval_views(rows, state, self.clock())

    async def get_approval(self: _Store, approval_id: str) -> dict[str, Any]:
        row = self.conn.execute(_SELECT + " WHERE id=?", (approval_id,)).fetchone()
        if row is None:
            raise NotFound(f"no approval {approval_id}")
        return approval_view(dict(zip(APPROVAL_COLUMNS, row, strict=True)), self.clock())

    async def decide_approval(
        self: _Store, approval_id: str, approve: bool, note: str | None = None
    ) -> dict[str, Any]:
        now = self.clock()
        with self.tx() as c:
            approval = read_approval(c, approval_id)
            if approval is None:
                raise NotFound(f"no approval {approval_id}")
            state = approval.state_at(now)
            if state != "pending":
                raise ValueError(f"approval {approval_id} is already {state}")
            verdict = "approved" if approve else "denied"
            row = c.execute("SELECT scope, agent FROM approvals WHERE id=?",
                            (approval_id,)).fetchone()
            c.execute("UPDATE approvals SET state=?, decided_ms=?, note=? WHERE id=?",
                      (verdict, now, note, approval_id))
            announce(c, now, [approval_decided(approval_id, verdict, row[0], row[1],
                                               approval.key_id, note)])
        return await ApprovalsMixin.get_approval(self, approval_id)
