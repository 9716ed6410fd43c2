"""`outlay catalogue`: the shipped vendor catalogue, as a table or JSON, for one vendor or all."""

from __future__ import annotations

import json

from click.testing import CliRunner

from outlay.cli.main import main
from outlay.vendors.catalogue import catalogue


def test_every_endpoint_of_a_vendor_is_listed_with_how_it_is_priced() -> None:
    result = CliRunner().invoke(main, ["catalogue", "resend"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["VENDOR", "METHOD", "PATH", "KIND", "HOW"]
    assert len(lines) == 1 + len(catalogue()["resend"])
    assert any(line.split()[:4] == ["resend", "POST", "/emails", "priced"] for line in lines)
    assert any(line.split()[:4] == ["resend", "GET", "/**", "free"] for line in lines)


def test_json_lists_every_vendor() -> None:
    result = CliRunner().invoke(main, ["catalogue", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["vendor"] for r in rows} == {"stripe", "twilio", "resend"}
    assert len(rows) == sum(len(e) for e in catalogue().values())
    assert all(r["kind"] == ("priced" if r["how"] else "free") for r in rows)


def test_a_vendor_outside_the_catalogue_is_refused() -> None:
    result = CliRunner().invoke(main, ["catalogue", "acme"])
    assert result.exit_code == 2
    assert "acme" in result.output
