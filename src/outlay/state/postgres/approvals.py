"""Approvals in PostgreSQL (SPEC §2.5 on_breach: require_approval): opened on the request path,
decided by a human, then claimed by exactly one call (one conditional UPDATE, whichever
replica's call comes first) and given back if that call is refused for another reason.

The records, events and refusal are those of the embedded store (`announcements.py`).
"""

from __future__ import annotations

import json
from typing import Any

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
from outlay.state.postgres.outbox import announce
from outlay.state.postgres.pool import Pooled

_SELECT = f"SELECT {', '.join(APPROVAL_COLUMNS)} FROM approvals"  # noqa: S608 (fixed columns)
_NEWEST = " ORDER BY created_ms DESC, seq DESC"


class ApprovalsMixin(Pooled):
    async def list_approvals(self, state: str | None = None) -> list[dict[str, Any]]:
        states = stored_states(state)
        if states is None:
            rows = await self.fetchall(_SELECT + _NEWEST)
        else:
            rows = await self.fetchall(_SELECT + " WHERE state = ANY(%s)" + _NEWEST,
                                       (list(states),))
        return approval_views(rows, state, self.clock())

    async def get_approval(self, approval_id: str) -> dict[str, Any]:
        row = await self.fetchone(_SELECT + " WHERE id = %s", (approval_id,))
        if row is None:
            raise NotFound(f"no approval {approval_id}")
        return approval_view(dict(zip(APPROVAL_COLUMNS, row, strict=True)), self.clock())

    async def find_approval(self, approval_id: str) -> Approval | None:
        """The approval as `judge` reads it, or None when there is none of this id."""
        row = await self.fetchone(_SELECT + " WHERE id = %s", (approval_id,))
        return None if row is None else approval_of(dict(zip(APPROVAL_COLUMNS, row,
                                                             strict=True)))

    async def decide_approval(
        self, approval_id: str, approve: bool, note: str | None = None
    ) -> dict[str, Any]:
        now = self.clock()
        async with self.tx() as cur:
            await cur.execute(_SELECT + " WHERE id = %s FOR UPDATE", (approval_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no approval {approval_id}")
            fields = dict(zip(APPROVAL_COLUMNS, row, strict=True))
            state = approval_of(fields).state_at(now)
            if state != "pending":
                raise ValueError(f"approval {approval_id} is already {state}")
            verdict = "approved" if approve else "denied"
            await cur.execute("UPDATE approvals SET state = %s, decided_ms = %s, note = %s "
                              "WHERE id = %s", (verdict, now, note, approval_id))
            await announce(cur, now, [approval_decided(
                approval_id, verdict, fields["scope"], fields["agent"], fields["key_id"],
                note)])
        return await self.get_approval(approval_id)

    async def open_approval(
        self, now_ms: int, ticket: Ticket, key: KeyInfo, need: ApprovalNeed, ttl_ms: int,
    ) -> ApprovalRequired:
        """Record an approval request (or reuse the pending one the agent named, which
        `judge` found to be for this very call) and return the refusal naming the approval
        to wait for."""
        breaches = breaches_text(need)
        async with self.tx() as cur:
            if ticket.approval_id:
                await cur.execute("UPDATE approvals SET breaches = %s WHERE id = %s AND "
                                  "key_id = %s AND state = 'pending' AND expires_ms > %s",
                                  (breaches, ticket.approval_id, key.id, now_ms))
                if cur.rowcount:
                    return approval_required(need, ticket.approval_id)
            approval_id = new_approval_id()
            request = approval_request(ticket)
            estimated = ticket.call.cost_micros or 0
            await cur.execute(
                "INSERT INTO approvals(id, created_ms, key_id, agent, scope, code, reason, "
                "estimated, request, state, breaches, expires_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s)",
                (approval_id, now_ms, key.id, key.agent, need.scope, need.code, need.reason,
                 estimated, json.dumps(request), breaches, now_ms + ttl_ms))
            await announce(cur, now_ms, [approval_requested(approval_id, key, need, request,
                                                            estimated)])
        return approval_required(need, approval_id)

    async def claim_approval(self, approval_id: str, key_id: str, request_id: str,
                             now_ms: int) -> bool:
        """Spend an approved, unexpired approval of this key on one call: True if this call
        claimed it (approved → used, used_by=request_id); False if it is not (any more)."""
        claimed = await self.execute(
            "UPDATE approvals SET state = 'used', used_by = %s, used_ms = %s "
            "WHERE id = %s AND key_id = %s AND state = 'approved' "
            "AND (expires_ms IS NULL OR expires_ms > %s)",
            (request_id, now_ms, approval_id, key_id, now_ms))
        return claimed == 1

    async def release_approval(self, approval_id: str, request_id: str) -> None:
        """Give back an approval a call claimed and was then refused for another reason."""
        await self.execute("UPDATE approvals SET state = 'approved', used_by = NULL, "
                           "used_ms = NULL WHERE id = %s AND state = 'used' AND used_by = %s",
                           (approval_id, request_id))
