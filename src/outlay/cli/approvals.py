"""`outlay approvals`: the calls held for a human, and the decision on them; and the kill
switch over a whole agent or group."""

from __future__ import annotations

from typing import Any

import click

from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import fields, table, usd, when
from outlay.policy.approvals import STATES


@click.group()
def approvals() -> None:
    """List, approve and deny calls held by `on_breach: require_approval`."""


def _breaches(approval: dict[str, Any]) -> str:
    listed = approval.get("breaches") or [{"scope": approval["scope"], "code": approval["code"]}]
    return ", ".join(f"{b['code']} on {b['scope']}" for b in listed)


def _call(approval: dict[str, Any]) -> str:
    """The approved request: method, path, vendor and model."""
    request = approval.get("request") or {}
    where = " ".join(str(request[k]) for k in ("method", "path") if request.get(k))
    return " · ".join(str(part) for part in (where, request.get("vendor"), request.get("model"))
                      if part) or "-"


@approvals.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only approvals in this state.")
@admin_command
def approvals_list(admin: Admin, state: str | None) -> None:
    """Approvals, newest first."""
    answer = admin.client.get("/approvals", **({"state": state} if state else {}))
    admin.emit(answer, lambda a: table(
        ["ID", "STATE", "AGENT", "BREACHES", "CALL", "AT MOST", "CREATED", "USED BY"],
        ([x["id"], x["state"], x["agent"], _breaches(x), _call(x), usd(x["estimated_usd"]),
          when(x["created_at"]), x.get("used_by")] for x in a.get("approvals", [])),
        "(no approvals)"))


@approvals.command("show")
@click.argument("approval_id")
@admin_command
def approvals_show(admin: Admin, approval_id: str) -> None:
    """What an approval lets through (breaches, the request, the most it may cost), until
    when, and the call that used it."""
    answer = admin.client.get(f"/approvals/{segment(approval_id)}")
    admin.emit(answer, lambda a: fields([
        ("id", a["id"]), ("state", a["state"]), ("agent", a["agent"]), ("key", a["key_id"]),
        ("breaches", _breaches(a)), ("call", _call(a)),
        ("body sha256", (a.get("request") or {}).get("body_sha256")),
        ("at most", usd(a["estimated_usd"])), ("reason", a["reason"]),
        ("opened", when(a["created_at"])), ("expires", when(a.get("expires_at"))),
        ("decided", when(a.get("decided_at"))), ("note", a.get("note")),
        ("used by", a.get("used_by")), ("used", when(a.get("used_at"))),
    ]))


def _decide(admin: Admin, approval_id: str, verb: str, note: str | None) -> None:
    body: dict[str, Any] = {} if note is None else {"note": note}
    answer = admin.client.post(f"/approvals/{segment(approval_id)}/{verb}", body)
    admin.emit(answer, lambda a: f"Approval {a['id']} is now {a['state']}.")


@approvals.command("approve")
@click.argument("approval_id")
@click.option("--note", help="Why, for the audit.")
@admin_command
def approvals_approve(admin: Admin, approval_id: str, note: str | None) -> None:
    """Let the held call (or its retry with X-Outlay-Approval) through once."""
    _decide(admin, approval_id, "approve", note)


@approvals.command("deny")
@click.argument("approval_id")
@click.option("--note", help="Why, for the audit.")
@admin_command
def approvals_deny(admin: Admin, approval_id: str, note: str | None) -> None:
    """Refuse the held call."""
    _decide(admin, approval_id, "deny", note)


@click.command("kill")
@click.option("--agent", help="Revoke every key of this agent.")
@click.option("--group", help="Revoke every key of every agent of this group.")
@admin_command
def kill(admin: Admin, agent: str | None, group: str | None) -> None:
    """The kill switch: revoke every key of an agent or group and cut its calls in flight."""
    if (agent is None) == (group is None):
        raise click.UsageError("give exactly one of --agent or --group")
    path = f"/agents/{segment(agent)}/revoke" if agent else f"/groups/{segment(group or '')}/revoke"
    answer = admin.client.post(path, {})
    admin.emit(answer, lambda a: f"Revoked {len(a['revoked'])} key(s): "
                                 f"{', '.join(a['revoked']) or 'none were live'}.")
