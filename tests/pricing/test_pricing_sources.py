"""The shipped prices against their source: the snapshot is what genai-prices says, every
figure of the table is the snapshot's (or prices.yaml's where the snapshot has none), every
model is priced and its limits are traceable; `outlay prices update` makes a new snapshot."""

from __future__ import annotations

import json
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any

import genai_prices
import pytest
import yaml
from agents.models.default_models import get_default_model
from click.testing import CliRunner
from genai_prices.data import providers

from outlay.cli.main import main
from outlay.policy.money import usd_to_micros
from outlay.pricing.genai_source import OTHER_PROVIDERS, snapshot
from outlay.pricing.sources import DERIVED_OUTPUT, OWN, SOURCED_FIELDS, Snapshot
from outlay.pricing.table import PriceTable, load_table

SHIPPED = yaml.safe_load(files("outlay.pricing").joinpath("prices.snapshot.yaml")
                         .read_text("utf-8"))
OWN_TABLE = yaml.safe_load(files("outlay.pricing").joinpath("prices.yaml").read_text("utf-8"))
LABEL = f"{SHIPPED['source']} {SHIPPED['version']} ({SHIPPED['generated']})"


def test_the_snapshot_is_what_the_installed_genai_prices_says() -> None:
    assert SHIPPED["source"] == "genai-prices"
    assert SHIPPED["version"] == genai_prices.__version__, (
        "genai-prices was upgraded: regenerate with `outlay prices update --out "
        "src/outlay/pricing/prices.snapshot.yaml`")
    again = snapshot(providers, genai_prices.__version__,
                     date.fromisoformat(SHIPPED["generated"]))
    assert json.loads(json.dumps(again)) == SHIPPED


def _sourced_names() -> dict[str, str]:
    """Table model -> the snapshot name its prices come from."""
    aliases = {alias: name for name, entry in OWN_TABLE["models"].items()
               for alias in entry.get("aliases", ())}
    return {aliases.get(name, name): name for name in SHIPPED["models"]}


def test_every_shipped_figure_is_its_sources() -> None:
    table = PriceTable.load()
    sourced = _sourced_names()
    assert table.names(), "no models"
    for name in table.names():
        model = table.resolve(name)
        assert model is not None
        sources = dict(model.sources)
        shipped = model.to_dict()
        if name in sourced:
            raw = SHIPPED["models"][sourced[name]]
            assert sources["prices"] == LABEL, name
            for field in ("input", "cached_input", "cache_write", "output"):
                if field in raw:
                    assert usd_to_micros(shipped[field]) == usd_to_micros(raw[field]), (
                        name, field)
            for given, theirs in zip(shipped["tiers"], raw.get("tiers", []), strict=False):
                assert given["threshold"] == theirs["threshold"], name
                assert usd_to_micros(given["input"]) == usd_to_micros(theirs["input"]), name
                assert usd_to_micros(given["output"]) == usd_to_micros(theirs["output"]), name
            for tier, prices in raw.get("service_tiers", {}).items():
                assert usd_to_micros(shipped["service_tiers"][tier]["output"]) == \
                    usd_to_micros(prices["output"]), (name, tier)
            # prices.yaml repeats no figure that the snapshot gives
            own = OWN_TABLE["models"].get(name, {})
            assert not {f for f in own if f in SOURCED_FIELDS and f in raw}, name
        else:
            assert sources["prices"] == OWN, name
        # the limits a reservation needs: each from a named place
        assert sources["context_window"] in (LABEL, OWN), name
        assert sources["max_output_tokens"] in (OWN, DERIVED_OUTPUT), name
        if sources["max_output_tokens"] == DERIVED_OUTPUT:
            assert model.max_output_tokens == model.context_window


def test_every_model_has_a_price() -> None:
    table = PriceTable.load()
    for name in table.names():
        model = table.resolve(name)
        assert model is not None
        if model.free:
            assert name.startswith("sim-")
            continue
        assert model.input_micros_per_mtok > 0, name
        if model.max_output_tokens and "embed" not in name:  # embeddings write nothing
            assert model.output_micros_per_mtok > 0, name


def test_current_models_are_priced() -> None:
    table = PriceTable.load()
    for name in (get_default_model(), "gpt-5.1", "gpt-5.2", "gpt-5.4", "gpt-5.4-mini",
                 "gpt-5.5", "gpt-5.6-luna", "gpt-5.6-sol", "gpt-5.6-terra", "gpt-6-sol",
                 "gpt-6.2-sol", "claude-opus-4-5", "claude-sonnet-4-6", "claude-opus-5-5",
                 "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-4-0"):
        model = table.resolve(name)
        assert model is not None, name
        assert model.input_micros_per_mtok > 0, name
    # what the snapshot lists without a context window has no bound, so no price
    assert table.resolve("gpt-5.5-cyber") is None


def test_a_snapshot_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    doc = {**SHIPPED, "version": "9.9.9", "models": {
        **SHIPPED["models"],
        "gpt-5.6-luna": {**SHIPPED["models"]["gpt-5.6-luna"], "input": "0.3"}}}
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    model = load_table(None, str(path)).resolve("gpt-5.6-luna")
    assert model is not None
    assert model.input_micros_per_mtok == 300_000
    assert dict(model.sources)["prices"].startswith("genai-prices 9.9.9")


@pytest.mark.parametrize(("text", "message"), [
    ("models: {}\n", "source: expected a non-empty string"),
    ("[1]\n", "expected a price snapshot"),
    ("source: s\nversion: v\ngenerated: g\nmodels: {m: {provider: openai, input: x}}\n",
     "prices.m.input"),
])
def test_a_bad_snapshot_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_table(None, str(path))
    with pytest.raises(ValueError, match="cannot read"):
        load_table(None, str(tmp_path / "missing.yaml"))


def test_config_overrides_say_so() -> None:
    table = PriceTable.load({"gpt-4o": {"input": 3}, "mine": {
        "provider": "openai", "input": 1, "output": 2, "max_output_tokens": 10,
        "context_window": 100}})
    assert dict(table.resolve("gpt-4o").sources)["prices"] == "config"  # type: ignore[union-attr]
    assert dict(table.resolve("mine").sources) == {  # type: ignore[union-attr]
        "prices": "config", "max_output_tokens": "config", "context_window": "config"}


_THEIRS = {"input": "input_mtok", "cached_input": "cache_read_mtok",
           "cache_write": "cache_write_mtok", "output": "output_mtok"}
_WHEN = {"flex": {"service_tier": "flex"}, "priority": {"service_tier": "priority"},
         "batch": {"processing": "batch"}}


def _their_prices(entry: dict[str, Any]) -> dict[str, Any]:
    prices: dict[str, Any] = {}
    for ours, theirs in _THEIRS.items():
        if ours not in entry:
            continue
        tiers = [{"start": t["threshold"], "price": t[ours]} for t in entry.get("tiers", [])
                 if ours in t]
        prices[theirs] = {"base": entry[ours], "tiers": tiers} if tiers else entry[ours]
    return prices


def _data_file(tmp_path: Path, models: dict[str, Any]) -> Path:
    """A genai-prices data file (the shape of its published data.json) of these entries."""
    raw = []
    theirs = {"openai": "openai", "anthropic": "anthropic",
              **{name: source for source, (name, _) in OTHER_PROVIDERS.items()}}
    for ours, provider in theirs.items():
        listed = []
        for key, entry in models.items():
            if entry["provider"] != ours:
                continue
            name = key.split("/", 1)[1] if ours not in ("openai", "anthropic") else key
            model: dict[str, Any] = {"id": name, "match": {"equals": name},
                                     "prices": _their_prices(entry)}
            if "context_window" in entry:
                model["context_window"] = entry["context_window"]
            variants = [{"when": _WHEN[tier], "prices": _their_prices(prices)}
                        for tier, prices in entry.get("service_tiers", {}).items()]
            if variants:
                model["price_variants"] = variants
            listed.append(model)
        raw.append({"id": provider, "name": provider, "api_pattern": provider,
                    "models": listed})
    path = tmp_path / "data.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_prices_update_writes_a_snapshot_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "prices.snapshot.yaml"
    result = CliRunner().invoke(main, ["prices", "update", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"genai-prices {genai_prices.__version__}" in result.output
    written = yaml.safe_load(out.read_text("utf-8"))
    assert written["models"] == SHIPPED["models"]

    # a newer price list, as a data file: the same models, one of them cheaper
    changed = {**SHIPPED["models"],
               "gpt-5.4-mini": {**SHIPPED["models"]["gpt-5.4-mini"], "input": "0.5"}}
    data = _data_file(tmp_path, changed)
    result = CliRunner().invoke(main, ["prices", "update", "--from", str(data), "--out",
                                       str(out)])
    assert result.exit_code == 0, result.output
    assert dict(Snapshot.from_file(str(out)).models) == changed
    table = load_table(None, str(out))
    assert "with data.json" in dict(table.resolve("gpt-5.4-mini").sources)["prices"]  # type: ignore[union-attr]


def test_prices_update_refuses_a_file_that_is_no_price_list(tmp_path: Path) -> None:
    bad = tmp_path / "data.json"
    bad.write_text('{"providers": []}', encoding="utf-8")
    result = CliRunner().invoke(main, ["prices", "update", "--from", str(bad), "--out",
                                       str(tmp_path / "x.yaml")])
    assert result.exit_code != 0
    assert "expected genai-prices' list of providers" in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_prices_update_refuses_a_list_that_drops_a_model_the_table_needs(
        tmp_path: Path) -> None:
    # prices.yaml keeps gpt-4o's limits but not its prices: a list without it would unprice it
    data = _data_file(tmp_path, {"gpt-5.4-mini": SHIPPED["models"]["gpt-5.4-mini"]})
    out = tmp_path / "x.yaml"
    result = CliRunner().invoke(main, ["prices", "update", "--from", str(data), "--out",
                                       str(out)])
    assert result.exit_code != 0
    assert "would not load" in result.output
    assert "required (USD per million tokens)" in result.output
    assert not out.exists()
