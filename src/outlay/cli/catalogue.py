"""`outlay catalogue`: what the installed Outlay knows of each built-in vendor's endpoints:
those it prices, and how, and those that move no money (vendors/catalogue.yaml). Any other
call has no known price; a vendor's `rules` in the configuration come before all of it."""

from __future__ import annotations

import json

import click

from outlay.cli.output import table
from outlay.vendors.catalogue import catalogue as shipped


@click.command()
@click.argument("vendor", required=False, type=click.Choice(sorted(shipped())))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def catalogue(vendor: str | None, as_json: bool) -> None:
    """The endpoints Outlay prices or knows to be free, by vendor; any other is unpriced
    (refused with price_unknown under a hard budget)."""
    rows = [(name, e.method, e.path, "priced" if e.how else "free", e.how or "")
            for name, endpoints in sorted(shipped().items()) if vendor in (None, name)
            for e in endpoints]
    if as_json:
        click.echo(json.dumps([dict(zip(("vendor", "method", "path", "kind", "how"), row,
                                        strict=True)) for row in rows], indent=2))
        return
    click.echo(table(["VENDOR", "METHOD", "PATH", "KIND", "HOW"], rows, "(no endpoints)"))
