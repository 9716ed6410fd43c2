"""The approval records and events both durable stores write, built from plain values; each
backend keeps only its SQL (`sqlite/events.py`, `postgres/approvals.py`); and the budget
events a settlement raises."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from outlay.policy.approvals import Approval, Approved
from outlay.policy.decide import iso, percent
from outlay.policy.decision import ApprovalNeed, Breach, Event, KeyInfo
from outlay.policy.errors import ApprovalRequired
from outlay.policy.model import Policy
from outlay.policy.money import micros_to_usd
from outlay.state.base import Ticket

APPROVAL_COLUMNS = ("id", "created_ms", "key_id", "agent", "scope", "code", "reason",
                    "estimated", "request", "state", "decided_ms", "note", "used_by",
                    "breaches", "expires_ms", "used_ms")


def new_approval_id() -> str:
    return "apr_" + secrets.token_hex(8)


def approval_request(ticket: Ticket) -> dict[str, Any]:
    """What an approval records of the call waiting for it: what the human sees, and what a
    call presenting the approval must match (method, path, vendor, model, body hash)."""
    shape = ticket.shape
    return {"route": ticket.route, "vendor": ticket.call.vendor,
            "model": ticket.call.model, "request_id": ticket.request_id,
            "method": shape.method if shape else None, "path": shape.path if shape else None,
            "body_sha256": shape.body_sha256 if shape else None}


def breaches_text(need: ApprovalNeed) -> str:
    """The breaches an approval is opened for, as stored (JSON: [[scope, code], …])."""
    return json.dumps([list(b) for b in need.breaches or ((need.scope, need.code),)])


def _breaches(row: Mapping[str, Any]) -> tuple[Breach, ...]:
    # an approval opened before breaches were recorded covers the one it names
    if not row.get("breaches"):
        return ((row["scope"], row["code"]),)
    return tuple((str(scope), str(code)) for scope, code in json.loads(row["breaches"]))


def approval_of(row: Mapping[str, Any]) -> Approval:
    """The stored approval (a row of APPROVAL_COLUMNS) as `judge` reads it."""
    request = json.loads(row["request"])
    method, path, body = request.get("method"), request.get("path"), request.get("body_sha256")
    shape = Approved(method, path, body) if method and path and body else None
    return Approval(row["id"], row["key_id"], row["state"], _breaches(row), row["estimated"],
                    request.get("vendor"), request.get("model"), shape, row.get("expires_ms"),
                    row["used_by"])


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


def _at(ms: int | None) -> str | None:
    return None if ms is None else iso(ms)


def approval_view(row: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """An approval as the admin API answers it: what was approved (the breaches, the most
    the call may cost, the request) and what used it."""
    return {
        "id": row["id"], "state": approval_of(row).state_at(now_ms),
        "created_at": iso(row["created_ms"]), "key_id": row["key_id"],
        "agent": row["agent"], "scope": row["scope"], "code": row["code"],
        "reason": row["reason"],
        "breaches": [{"scope": scope, "code": code} for scope, code in _breaches(row)],
        "estimated_usd": micros_to_usd(row["estimated"]), "request": json.loads(row["request"]),
        "expires_at": _at(row.get("expires_ms")), "decided_at": _at(row["decided_ms"]),
        "note": row["note"], "used_by": row["used_by"], "used_at": _at(row.get("used_ms")),
    }


def approval_views(rows: list[tuple[Any, ...]], state: str | None, now_ms: int
                   ) -> list[dict[str, Any]]:
    """Rows of APPROVAL_COLUMNS as answers, only those in `state` (as `approval_view` reads
    it: `expired` is a stored state past its expiry)."""
    views = [approval_view(dict(zip(APPROVAL_COLUMNS, r, strict=True)), now_ms) for r in rows]
    return [v for v in views if state is None or v["state"] == state]


def stored_states(state: str | None) -> tuple[str, ...] | None:
    """The stored states to read for a listing in `state` (None: every one)."""
    if state is None:
        return None
    return ("pending", "approved") if state == "expired" else (state,)


def settlement_events(
    scope: str, policy: Policy, counter: str, period_start: int, spent: int,
    key: KeyInfo | None, overrun: tuple[str, int] | None = None,
) -> list[Event]:
    """budget.warning at warn_at, and budget.exceeded when a soft budget is crossed, judged
    on settled spend (or money moved out); a hard budget is crossed only by a settlement
    above its reservation, `overrun` (its request id and the micro-USD charged above what it
    held). `counter`: the counter settled (model.counter_name: period, and flow)."""
    events = []
    for budget in policy.budgets:
        if budget.counter != counter:
            continue
        data: dict[str, object] = {
            "scope": scope, "agent_id": key.agent if key else None,
            "key_id": key.id if key else None, "period": budget.period, "mode": budget.mode,
            "spent_usd": micros_to_usd(spent), "cap_usd": micros_to_usd(budget.cap_micros),
            "percent_used": percent(spent, budget.cap_micros),
            **({} if budget.flow == "spend" else {"flow": budget.flow}),
        }
        mark = f"{scope}:{counter}:{period_start}"
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
