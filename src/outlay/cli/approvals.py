"""`outlay approvals`: the calls held for a human, and the decision on them; and the kill
switch over a whole agent or group."""

from __future__ import annotations

from typing import Any

import click

from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import table, usd, when


@click.group()
def approvals() -> None:
    """List, approve and deny calls held by `on_breach: require_approval`."""


@approvals.command("list")
@click.option("--state", type=click.Choice(["pending", "approved", "denied", "used"]),
              help="Only approvals in this state.")
@admin_command
def approvals_list(admin: Admin, state: str | None) -> None:
    """Approvals, newest first."""
    answer = admin.client.get("/approvals", **({"state": state} if state else {}))
    admin.emit(answer, lambda a: table(
        ["ID", "STATE", "AGENT", "SCOPE", "BREACH", "ESTIMATE", "CREATED"],
        ([x["id"], x["state"], x["agent"], x["scope"], x["code"], usd(x["estimated_usd"]),
          when(x["created_at"])] for x in a.get("approvals", [])),
        "(no approvals)"))


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
