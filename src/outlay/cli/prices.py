"""`outlay prices`: the price table in force; `outlay prices check MODEL`, one model as a
request naming it is priced, with every dimension (service tiers, input-length tiers, tool
fees, limits and the betas that lift them) and where each figure comes from; `outlay prices
update`, a new price snapshot from the genai-prices package."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import click
import yaml

from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import cell, table, usd
from outlay.pricing.genai_source import SOURCE, snapshot
from outlay.pricing.sources import Snapshot
from outlay.pricing.table import PriceTable

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
        *(f"source of {what}: {where}" for what, where in (answer.get("source") or {}).items()),
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


@prices.command("update")
@click.option("--from", "data_file", type=click.Path(exists=True, dir_okay=False),
              help="A genai-prices data file (its data.json) instead of the installed "
                   "package's prices.")
@click.option("--out", default="prices.snapshot.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the snapshot.")
def prices_update(data_file: str | None, out: str) -> None:
    """Write a price snapshot from the genai-prices package (`pip install -U genai-prices`
    first for its newest prices), checked as the gateway would load it; point
    `price_snapshot:` in outlay.yaml at it and restart the gateway to use it."""
    try:
        import genai_prices
        from genai_prices.data import providers as bundled
    except ImportError:
        raise click.ClickException(
            "the genai-prices package is not installed: pip install -U genai-prices") from None
    providers: Any = bundled
    version = genai_prices.__version__
    if data_file is not None:
        from genai_prices.types import _providers_from_raw

        with open(data_file, encoding="utf-8") as handle:
            raw = json.load(handle)
        if not isinstance(raw, list):
            raise click.ClickException(f"{data_file}: expected genai-prices' list of providers")
        providers = _providers_from_raw(raw)
        version = f"{version} with {os.path.basename(data_file)}"
    text = render_snapshot(snapshot(providers, version, datetime.now(UTC).date()))
    try:
        table = PriceTable.load(snapshot=Snapshot.parse(text, out))
    except ValueError as exc:
        raise click.ClickException(f"the snapshot would not load: {exc}") from None
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"wrote {out}: {SOURCE} {version}, {len(table.names())} models priced "
               f"with prices.yaml; set `price_snapshot: {out}` and restart the gateway")


def render_snapshot(doc: Mapping[str, Any]) -> str:
    head = ("# Prices drawn from the genai-prices package by `outlay prices update`; Outlay's\n"
            "# prices.yaml adds what it lacks (output limits, betas, tool fees, aliases).\n")
    return head + yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True)
