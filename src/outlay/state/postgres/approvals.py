"""Approvals in PostgreSQL (SPEC §2 on_breach: require_approval): opened on the request path,
decided by a human, then claimed by exactly one call.

The records, events and refusal are those of the embedded store (`announcements.py`).
"""

from __future__ import annotations

import json
from typing import Any

from outlay.policy.decision import ApprovalNeed, KeyInfo
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
from outlay.state.postgres.outbox import announce
from outlay.state.postgres.pool import Pooled

_SELECT = f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals"  # noqa: S608 (fixed columns)
_NEWEST = " ORDER BY created_ms DESC, seq DESC"


class ApprovalsMixin(Pooled):
    async def list_approvals(self, state: str | None = None) -> list[dict[str, Any]]:
        if state:
            rows = await self.fetchall(_SELECT + " WHERE state = %s" + _NEWEST, (state,))
        else:
            rows = await self.fetchall(_SELECT + _NEWEST)
        return [approval_view(dict(zip(APPROVAL_COLUMNS, r, strict=True))) for r in rows]

    async def get_approval(self, approval_id: str) -> dict[str, Any]:
        row = await self.fetchone(_SELECT + " WHERE id = %s", (approval_id,))
        if row is None:
            raise NotFound(f"no approval {approval_id}")
        return approval_view(dict(zip(APPROVAL_COLUMNS, row, strict=True)))

    async def decide_approval(
        self, approval_id: str, approve: bool, note: str | None = None
    ) -> dict[str, Any]:
        now = self.clock()
        async with self.tx() as cur:
            await cur.execute("SELECT state, scope, agent, key_id FROM approvals WHERE id = %s "
                              "FOR UPDATE", (approval_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no approval {approval_id}")
            if row[0] != "pending":
                raise ValueError(f"approval {approval_id} is already {row[0]}")
            state = "approved" if approve else "denied"
            await cur.execute("UPDATE approvals SET state = %s, decided_ms = %s, note = %s "
                              "WHERE id = %s", (state, now, note, approval_id))
            await announce(cur, now, [approval_decided(approval_id, state, row[1], row[2],
                                                       row[3], note)])
        return await self.get_approval(approval_id)

    async def open_approval(
        self, now_ms: int, ticket: Ticket, key: KeyInfo, need: ApprovalNeed,
    ) -> ApprovalRequired:
        """Record an approval request (or reuse the pending one the agent named, so a retry
        does not open another) and return the refusal naming the approval to wait for."""
        async with self.tx() as cur:
            if ticket.approval_id:
                await cur.execute("SELECT id FROM approvals WHERE id = %s AND key_id = %s AND "
                                  "state = 'pending'", (ticket.approval_id, key.id))
                pending = await cur.fetchone()
                if pending:
                    return approval_required(need, pending[0])
            approval_id = new_approval_id()
            request = approval_request(ticket)
            estimated = ticket.call.cost_micros or 0
            await cur.execute(
                "INSERT INTO approvals(id, created_ms, key_id, agent, scope, code, reason, "
                "estimated, request, state) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending')",
                (approval_id, now_ms, key.id, key.agent, need.scope, need.code, need.reason,
                 estimated, json.dumps(request)))
            await announce(cur, now_ms, [approval_requested(approval_id, key, need, request,
                                                            estimated)])
        return approval_required(need, approval_id)

    async def claim_approval(self, approval_id: str, key_id: str, request_id: str) -> bool:
        """Spend an approved approval of this key on one call: True if this call claimed it
        (approved → used, used_by=request_id); False if it is not approved (any more)."""
        claimed = await self.execute(
            "UPDATE approvals SET state = 'used', used_by = %s "
            "WHERE id = %s AND key_id = %s AND state = 'approved'",
            (request_id, approval_id, key_id))
        return claimed == 1

    async def release_approval(self, approval_id: str, request_id: str) -> None:
        """Give back an approval a call claimed and was then refused for another reason."""
        await self.execute("UPDATE approvals SET state = 'approved', used_by = NULL "
                           "WHERE id = %s AND state = 'used' AND used_by = %s",
                           (approval_id, request_id))
