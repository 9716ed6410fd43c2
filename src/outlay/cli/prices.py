"""`outlay prices`: the price table in force, and `outlay prices check MODEL`, one model as a
request naming it is priced, with every dimension (service tiers, input-length tiers, tool
fees, limits and the betas that lift them)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import click

from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import cell, table, usd

_RATE_COLUMNS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")


@click.group(invoke_without_command=True)
@admin_command
def prices(admin: Admin) -> None:
    """The price table in force: USD per million tokens, by model
    (`outlay prices check MODEL` for one model's every dimension)."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    admin.emit(
        admin.client.get("/prices"),
        lambda answer: table(
            ["MODEL", "PROVIDER", "INPUT $/MTOK", "CACHED $/MTOK", "OUTPUT $/MTOK", "FREE",
             "ALIASES"],
            ([m.get("name", m.get("model")), m.get("provider"), usd(m.get("input")),
              usd(m.get("cached_input")), usd(m.get("output")), bool(m.get("free")),
              cell(m.get("aliases"))] for m in answer.get("models", [])),
            "(no prices)",
        ),
    )


@prices.command("check")
@click.argument("model")
@admin_command
def prices_check(admin: Admin, model: str) -> None:
    """How a request naming MODEL is priced: every tier, threshold, fee and limit."""
    admin.emit(admin.client.get(f"/prices/{segment(model)}"), render_check)


def render_check(answer: Mapping[str, Any]) -> str:
    name, requested = answer.get("name"), answer.get("requested")
    head = f"{name} ({answer.get('provider')})"
    if requested and requested != name:
        head += f", asked for as {requested}"
    if answer.get("free"):
        head += ": free"
    rows = table(["TIER", "PAST INPUT TOKENS", "INPUT", "CACHED", "CACHE WRITE",
                  "CACHE WRITE 1H", "OUTPUT"], _tier_rows(answer), "(no prices)")
    betas = answer.get("betas") or {}
    fees = answer.get("tool_fees") or {}
    lines = [
        head,
        "USD per million tokens:",
        rows,
        f"limits: max_output_tokens {answer.get('max_output_tokens')}, "
        f"context_window {answer.get('context_window')}",
        "betas: " + (", ".join(f"{beta} lifts " + cell(limits)
                               for beta, limits in betas.items()) or "none"),
        "tool fees (USD per use): " + (", ".join(f"{tool} {usd(fee)}"
                                                for tool, fee in fees.items()) or "none"),
        f"a request for `auto` (or no tier) is reserved at: "
        f"{answer.get('service_tier_default') or answer.get('base_tier')}",
        "aliases: " + cell(answer.get("aliases")),
    ]
    return "\n".join(lines)


def _tier_rows(answer: Mapping[str, Any]) -> Iterator[list[object]]:
    base = answer.get("base_tier") or "base"
    yield from _rows(base, answer, answer.get("tiers") or [])
    for tier, prices_of in (answer.get("service_tiers") or {}).items():
        yield from _rows(tier, prices_of, prices_of.get("tiers") or [])


def _rows(tier: str, rates: Mapping[str, Any], long: list[Mapping[str, Any]]
          ) -> Iterator[list[object]]:
    yield [tier, "-", *(usd(rates.get(column)) for column in _RATE_COLUMNS)]
    for past in long:
        yield [tier, past.get("threshold"), *(usd(past.get(column)) for column in _RATE_COLUMNS)]
