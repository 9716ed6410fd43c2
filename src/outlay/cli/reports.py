"""`outlay report`: totals from the ledger by a column or a label, or spend over time
(--series), as a table, the gateway's JSON (--json) or its CSV (--csv)."""

from __future__ import annotations

from typing import Any

import click

from outlay.cli import params
from outlay.cli.client import Admin, admin_command
from outlay.cli.output import table, usd, when
from outlay.cli.policies import scope_argument

REPORT_GROUPS = ("agent", "key", "group", "vendor", "model")


def _group(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--by: a ledger column, or label:NAME (the calls by that label's value)."""
    if value in REPORT_GROUPS or (value.startswith("label:") and len(value) > len("label:")):
        return value
    raise click.BadParameter(
        f"{value!r} is not one of {', '.join(REPORT_GROUPS)} or label:NAME", param=param)


def render_report(group_by: str, answer: dict[str, Any]) -> str:
    return table(
        [group_by.upper(), "REQUESTS", "ALLOWED", "REFUSED", "COST USD", "OUT USD",
         "UNSETTLED", "ESTIMATED"],
        ([r.get(group_by), r.get("requests"), r.get("allowed"), r.get("refused"),
          usd(r.get("cost_usd")), usd(r.get("out_usd")), r.get("unsettled"),
          r.get("estimated")]
         for r in answer.get("rows", [])),
        "(no calls)")


def render_series(answer: dict[str, Any]) -> str:
    """A line per point; split, a line per point of each value's series."""
    split = answer.get("split")
    title = f"Spend of {answer.get('scope')} by {answer.get('interval')}"
    if split is None:
        lines = table(["START", "REQUESTS", "REFUSED", "COST USD"],
                      ([when(p.get("start")), p.get("requests"), p.get("refused"),
                        usd(p.get("cost_usd"))] for p in answer.get("points", [])))
    else:
        lines = table(["START", str(split).upper(), "REQUESTS", "REFUSED", "COST USD"],
                      ([when(p.get("start")), s.get(split), p.get("requests"),
                        p.get("refused"), usd(p.get("cost_usd"))]
                       for s in answer.get("series", []) for p in s.get("points", [])),
                      "(no calls)")
    return f"{title}\n\n{lines}"


@click.command()
@click.option("--by", "group_by", default="agent", show_default=True, callback=_group,
              help="agent, key, group, vendor, model, or label:NAME (a label or tag).")
@click.option("--since", callback=params.since, metavar="WHEN",
              help="A duration ago (7d, 12h) or an ISO date.")
@click.option("--series", is_flag=True, help="Spend over time instead of totals.")
@click.option("--scope", default=None, help="--series: the scope (default global).",
              callback=lambda _c, _p, v: None if v is None else scope_argument(v))
@click.option("--interval", type=click.Choice(["hour", "day"]), default=None,
              help="--series: a point per hour (default) or day.")
@click.option("--until", callback=params.since, metavar="WHEN",
              help="--series: the end of the range (default now).")
@click.option("--split", type=click.Choice(["vendor", "model", "agent", "code"]),
              help="--series: one series per value of this column.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the gateway's CSV.")
@admin_command
def report(admin: Admin, group_by: str, since: int | None, series: bool, scope: str | None,
           interval: str | None, until: int | None, split: str | None, as_csv: bool) -> None:
    """Spend and refusals from the ledger, by agent, key, group, vendor, model or a label;
    with --series, spend over time."""
    if as_csv and admin.as_json:
        raise click.UsageError("give either --csv or --json, not both")
    fmt = "csv" if as_csv else None
    if series:
        if group_by != "agent":
            raise click.UsageError("--by makes a report of totals; --series one over time")
        query: dict[str, Any] = {"scope": scope, "interval": interval, "since": since,
                                 "until": until, "split": split}
        if as_csv:
            click.echo(admin.client.get_text("/reports/series", **query, format=fmt), nl=False)
            return
        admin.emit(admin.client.get("/reports/series", **query), render_series)
        return
    for name, given in (("--scope", scope), ("--interval", interval), ("--until", until),
                        ("--split", split)):
        if given is not None:
            raise click.UsageError(f"{name} goes with --series")
    if as_csv:
        click.echo(admin.client.get_text("/reports", group_by=group_by, since_ms=since,
                                         format=fmt), nl=False)
        return
    answer = admin.client.get("/reports", group_by=group_by, since_ms=since)
    admin.emit(answer, lambda a: render_report(group_by, a))
