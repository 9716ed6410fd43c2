"""Admin commands that read and organise: agents, groups, usage, report, audit, prices,
providers.

Each command makes one admin call (SPEC §4) and prints a table, or the answer with --json.
"""

from __future__ import annotations

from typing import Any

import click

from outlay.cli import params
from outlay.cli.approvals import approvals, kill
from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.keys import keys
from outlay.cli.output import NONE, table, usd, when
from outlay.cli.policies import scope_argument
from outlay.cli.prices import prices


@click.group()
def agents() -> None:
    """Create and list agents."""


@agents.command("create")
@click.argument("name")
@click.option("--group", help="Fleet the agent belongs to.")
@admin_command
def agents_create(admin: Admin, name: str, group: str | None) -> None:
    """Create a new agent (agents are also made on their first key); an agent that exists
    is refused: move it with `agents update`."""
    body = {"name": name} if group is None else {"name": name, "group": group}
    answer = admin.client.post("/agents", body)
    in_group = f" in group {group}" if group else ""
    given = " with the configured default_policy" if answer.get("default_policy") else ""
    admin.emit(answer, lambda _: f"Created agent {name}{in_group}{given}.")


@agents.command("update")
@click.argument("name")
@click.option("--group", required=True, help="The group to move the agent to.")
@admin_command
def agents_update(admin: Admin, name: str, group: str) -> None:
    """Move an existing agent to another group (and under that group's budgets)."""
    answer = admin.client.patch(f"/agents/{segment(name)}", {"group": group})
    admin.emit(answer, lambda _: f"Moved agent {name} to group {group}.")


@agents.command("list")
@admin_command
def agents_list(admin: Admin) -> None:
    """List agents and their groups."""
    admin.emit(
        admin.client.get("/agents"),
        lambda answer: table(
            ["NAME", "GROUP"],
            ([a.get("name"), a.get("group")] for a in answer.get("agents", [])),
            "(no agents)",
        ),
    )


@click.group()
def groups() -> None:
    """List groups of agents."""


def _members(group: dict[str, Any]) -> object:
    members = group.get("agents")
    return len(members) if isinstance(members, list) else members


@groups.command("list")
@admin_command
def groups_list(admin: Admin) -> None:
    """List groups and how many agents each has."""
    admin.emit(
        admin.client.get("/groups"),
        lambda answer: table(
            ["NAME", "AGENTS"],
            ([g.get("name"), _members(g)] for g in answer.get("groups", [])),
            "(no groups)",
        ),
    )


def render_usage(answer: dict[str, Any]) -> str:
    """Windows and budgets of a scope, then its spend by model and by vendor."""
    parts = [f"Usage of {answer.get('scope')}"]
    windows = answer.get("windows") or []
    parts.append(
        table(
            ["WINDOW", "LIMIT", "USED", "REMAINING", "RESETS AT"],
            (
                [
                    w.get("name"),
                    w.get("limit"),
                    w.get("used"),
                    w.get("remaining"),
                    when(w.get("reset_at")),
                ]
                for w in windows
            ),
            "No rate limits.",
        )
    )
    budgets = answer.get("budgets") or []
    parts.append(
        table(
            [
                "BUDGET",
                "MODE",
                "CAP USD",
                "SPENT USD",
                "RESERVED USD",
                "REMAINING USD",
                "RESETS AT",
            ],
            (
                [
                    b.get("period") + (" (out)" if b.get("flow") == "out" else ""),
                    b.get("mode"),
                    usd(b.get("cap_usd")),
                    usd(b.get("spent_usd")),
                    usd(b.get("reserved_usd")),
                    usd(b.get("remaining_usd")),
                    when(b.get("resets_at")),
                ]
                for b in budgets
            ),
            "No budgets.",
        )
    )
    by_model, by_vendor = answer.get("spend_by_model"), answer.get("spend_by_vendor")
    if (by_model or by_vendor) and answer.get("spend_since"):
        parts.append(f"Spend since {when(answer['spend_since'])}:")
    for title, spend in (("MODEL", by_model), ("VENDOR", by_vendor)):
        if spend:
            parts.append(table([title, "SPENT USD"], ([k, usd(v)] for k, v in spend.items())))
    if "values_seen" in answer:  # a tag:<name>=* scope: each value's own budgets
        parts.append(f"Values seen this period: {answer['values_seen']} "
                     f"(max_values {answer.get('max_values')})")
        parts.append(table(
            ["VALUE", "BUDGET", "CAP USD", "SPENT USD", "RESERVED USD", "REMAINING USD"],
            ([v.get("value"), b.get("period"), usd(b.get("cap_usd")), usd(b.get("spent_usd")),
              usd(b.get("reserved_usd")), usd(b.get("remaining_usd"))]
             for v in answer.get("values") or [] for b in v.get("budgets") or [{}]),
            "No values seen."))
    return "\n\n".join(parts)


@click.command()
@click.argument("scope", callback=lambda _ctx, _param, value: scope_argument(value))
@click.option("--values", "values", type=click.IntRange(min=1, max=1000), default=100,
              show_default=True, help="For tag:<name>=*: how many values to list (top spend).")
@admin_command
def usage(admin: Admin, scope: str, values: int) -> None:
    """Live usage of SCOPE: rate windows, budgets and spend; for tag:<name>=*, the values
    seen this period with their spend."""
    admin.emit(admin.client.get(f"/usage/{segment(scope)}", values=values), render_usage)


def _spend_of_cap(entry: dict[str, Any]) -> str:
    spent, cap = entry.get("spent_usd"), entry.get("cap_usd")
    if spent is None and cap is None:
        return NONE
    return f"{usd(spent)}/{usd(cap)}"


def _label_option(value: str | None) -> str | None:
    """`--label NAME=VALUE`: the calls carrying that label (a key's label or a call's tag)."""
    if value is None:
        return None
    scope_argument("tag:" + value.removeprefix("label:"))
    if value.endswith("=*"):
        raise click.BadParameter("name one value: NAME=VALUE", param_hint="--label")
    return "label:" + value.removeprefix("label:")


@click.command()
@click.option("--scope", callback=lambda _c, _p, v: None if v is None else scope_argument(v))
@click.option("--label", callback=lambda _c, _p, v: _label_option(v),
              help="Only calls carrying this label or tag: NAME=VALUE.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@admin_command
def audit(admin: Admin, scope: str | None, label: str | None, limit: int) -> None:
    """The audit ledger, newest first."""
    if scope is not None and label is not None:
        raise click.UsageError("give either --scope or --label, not both")
    answer = admin.client.get("/audit", scope=label or scope, limit=limit)
    admin.emit(
        answer,
        lambda answer: table(
            [
                "TIME",
                "REQUEST",
                "KEY",
                "AGENT",
                "VENDOR",
                "MODEL",
                "DECISION",
                "STATUS",
                "CODE",
                "RESERVED USD",
                "COST USD",
                "SPENT/CAP USD",
                "LABELS",
            ],
            (
                [
                    when(e.get("time")),
                    e.get("request_id"),
                    e.get("key_id"),
                    e.get("agent"),
                    e.get("vendor"),
                    e.get("model"),
                    e.get("decision"),
                    e.get("status"),
                    e.get("code"),
                    usd(e.get("reserved_usd")),
                    usd(e.get("cost_usd")),
                    _spend_of_cap(e),
                    e.get("labels"),
                ]
                for e in answer.get("entries", [])
            ),
            "(no entries)",
        ),
    )


@click.command()
@admin_command
def providers(admin: Admin) -> None:
    """Provider and vendor endpoints and their circuit breakers, as a worker sees them."""
    admin.emit(
        admin.client.get("/providers"),
        lambda answer: table(
            ["KIND", "PROVIDER", "ENDPOINT", "WEIGHT", "STATE", "FAILURES", "SIMULATED"],
            (
                [p.get("kind"), p.get("provider"), p.get("base_url"), p.get("weight"),
                 p.get("state"), p.get("consecutive_failures"),
                 "yes" if p.get("simulated") else "no"]
                for p in answer.get("providers", [])
            ),
            "(no endpoints)",
        ),
    )


REPORT_GROUPS = ["agent", "key", "group", "vendor", "model"]


@click.command()
@click.option(
    "--by", "group_by", type=click.Choice(REPORT_GROUPS), default="agent", show_default=True
)
@click.option(
    "--since",
    callback=params.since,
    metavar="WHEN",
    help="A duration ago (7d, 12h) or an ISO date.",
)
@admin_command
def report(admin: Admin, group_by: str, since: int | None) -> None:
    """Spend, money moved out and refusals from the ledger, by agent, key, group, vendor
    or model."""
    answer = admin.client.get("/reports", group_by=group_by, since_ms=since)
    admin.emit(
        answer,
        lambda answer: table(
            [group_by.upper(), "REQUESTS", "ALLOWED", "REFUSED", "COST USD", "OUT USD",
             "UNSETTLED", "ESTIMATED"],
            (
                [
                    r.get(group_by),
                    r.get("requests"),
                    r.get("allowed"),
                    r.get("refused"),
                    usd(r.get("cost_usd")),
                    usd(r.get("out_usd")),
                    r.get("unsettled"),
                    r.get("estimated"),
                ]
                for r in answer.get("rows", [])
            ),
            "(no calls)",
        ),
    )


COMMANDS = [keys, agents, groups, usage, report, audit, prices, providers, approvals, kill]
