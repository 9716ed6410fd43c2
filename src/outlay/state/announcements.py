"""The approval records and events both durable stores write, built from plain values; each
backend keeps only its SQL (`sqlite/events.py`, `postgres/approvals.py`); and the budget
events a settlement raises."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from outlay.policy.decide import iso, percent
from outlay.policy.decision import ApprovalNeed, Event, KeyInfo
from outlay.policy.errors import ApprovalRequired
from outlay.policy.model import Policy
from outlay.policy.money import micros_to_usd
from outlay.state.base import Ticket

APPROVAL_COLUMNS = ("id", "created_ms", "key_id", "agent", "scope", "code", "reason",
                    "estimated", "request", "state", "decided_ms", "note", "used_by")


def new_approval_id() -> str:
    return "apr_" + secrets.token_hex(8)


def approval_request(ticket: Ticket) -> dict[str, Any]:
    """What an approval shows of the call waiting for it."""
    return {"route": ticket.route, "vendor": ticket.call.vendor,
            "model": ticket.call.model, "request_id": ticket.request_id}


def approval_requested(
    approval_id: str, key: KeyInfo, need: ApprovalNeed, request: Mapping[str, Any],
    estimated: int,
) -> Event:
    return Event("approval.requested", {
        "approval_id": approval_id, "scope": need.scope, "agent_id": key.agent,
        "key_id": key.id, "reason": need.reason, "code": need.code,
        "estimated_usd": micros_to_usd(estimated), **request,
    }, f"approval.requested:{approval_id}")


def approval_required(need: ApprovalNeed, approval_id: str) -> ApprovalRequired:
    """The refusal that tells the agent which approval to wait for."""
    return ApprovalRequired(
        f"{need.reason} A human must approve this call: approval {approval_id} is pending. "
        f"Retry with the header X-Outlay-Approval: {approval_id} once it is approved.",
        need.wait_s, approval_id=approval_id, scope=need.scope, reason=need.code)


def approval_decided(
    approval_id: str, state: str, scope: str, agent: str, key_id: str, note: str | None,
) -> Event:
    return Event("approval.decided", {
        "approval_id": approval_id, "decision": state, "scope": scope,
        "agent_id": agent, "key_id": key_id, "note": note,
    }, f"approval.decided:{approval_id}")


def key_revoked(key_id: str, agent: str) -> Event:
    return Event("key.revoked", {
        "key_id": key_id, "agent_id": agent, "scope": f"key:{key_id}",
    }, f"key.revoked:{key_id}")


def approval_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "state": row["state"], "created_at": iso(row["created_ms"]),
        "key_id": row["key_id"], "agent": row["agent"], "scope": row["scope"],
        "code": row["code"], "reason": row["reason"],
        "estimated_usd": micros_to_usd(row["estimated"]), "request": json.loads(row["request"]),
        "decided_at": None if row["decided_ms"] is None else iso(row["decided_ms"]),
        "note": row["note"], "used_by": row["used_by"],
    }


def settlement_events(
    scope: str, policy: Policy, period: str, period_start: int, spent: int, key: KeyInfo | None,
    overrun: tuple[str, int] | None = None,
) -> list[Event]:
    """budget.warning at warn_at, and budget.exceeded when a soft budget is crossed, judged
    on settled spend; a hard budget is crossed only by a settlement above its reservation,
    `overrun` (its request id and the micro-USD charged above what it held)."""
    events = []
    for budget in policy.budgets:
        if budget.period != period:
            continue
        data: dict[str, object] = {
            "scope": scope, "agent_id": key.agent if key else None,
            "key_id": key.id if key else None, "period": period, "mode": budget.mode,
            "spent_usd": micros_to_usd(spent), "cap_usd": micros_to_usd(budget.cap_micros),
            "percent_used": percent(spent, budget.cap_micros),
        }
        mark = f"{scope}:{period}:{period_start}"
        if budget.warn_at is not None and spent >= budget.warn_at * budget.cap_micros:
            events.append(Event("budget.warning", {**data, "warn_at": budget.warn_at},
                                f"budget.warning:{mark}"))
        if spent <= budget.cap_micros:
            continue
        if budget.mode == "soft":
            events.append(Event("budget.exceeded", data, f"budget.exceeded:{mark}"))
        elif overrun is not None:
            events.append(Event("budget.exceeded", {
                **data, "request_id": overrun[0], "overrun_usd": micros_to_usd(overrun[1])},
                f"budget.exceeded:{mark}"))
    return events
