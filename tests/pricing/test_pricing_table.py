"""The shipped price table, name resolution and config overrides."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.pricing import ModelPrice, PriceTable
from outlay.pricing.rates import Rates, TierPrices

REQUIRED = {
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini",
    "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-3.5-turbo", "text-embedding-3-small",
    "text-embedding-3-large", "text-embedding-ada-002", "gpt-3.5-turbo-instruct",
    "claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4",
    "claude-3-7-sonnet", "claude-3-5-haiku", "claude-haiku-4-5", "claude-3-haiku", "sim-free",
}  # fmt: skip


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def price(table: PriceTable, name: str) -> ModelPrice:
    found = table.resolve(name)
    assert found is not None, name
    return found


def test_shipped_table_lists_the_main_models(table: PriceTable) -> None:
    assert set(table.names()) >= REQUIRED
    assert table.names() == sorted(table.names())


def test_shipped_prices_are_exact_micros(table: PriceTable) -> None:
    mini = price(table, "gpt-4o-mini")
    assert mini == ModelPrice(
        name="gpt-4o-mini",
        provider="openai",
        input_micros_per_mtok=150_000,
        cached_input_micros_per_mtok=75_000,
        output_micros_per_mtok=600_000,
        max_output_tokens=16384,
        context_window=128_000,
        aliases=("fast",),
        service_tiers=(("priority", TierPrices(Rates(250_000, 125_000, 1_000_000, 250_000,
                                                      250_000))),),
        tool_fees=(("code_interpreter", 30_000), ("file_search", 2_500), ("mcp", 0),
                   ("web_search", 10_000), ("web_search_preview", 25_000)),
    )
    sonnet = price(table, "claude-sonnet-4-5")
    assert (sonnet.provider, sonnet.input_micros_per_mtok, sonnet.output_micros_per_mtok) == (
        "anthropic",
        3_000_000,
        15_000_000,
    )
    assert sonnet.cached_input_micros_per_mtok == 300_000
    assert price(table, "gpt-5-nano").cached_input_micros_per_mtok == 5_000


def test_every_model_is_well_formed(table: PriceTable) -> None:
    for name in table.names():
        model = price(table, name)
        assert model.provider in ("openai", "anthropic") or name.startswith(
            f"{model.provider}/")
        assert model.context_window > 0
        assert model.cached_input_micros_per_mtok <= model.input_micros_per_mtok
        if not model.free and "embed" not in name:
            assert model.max_output_tokens > 0
            assert model.output_micros_per_mtok > 0


def test_models_without_caching_charge_cached_input_as_input(table: PriceTable) -> None:
    turbo = price(table, "gpt-3.5-turbo")
    assert turbo.cached_input_micros_per_mtok == turbo.input_micros_per_mtok == 500_000


def test_free_simulated_model(table: PriceTable) -> None:
    free = price(table, "sim-free")
    assert free.free
    assert free.provider == "openai"


@pytest.mark.parametrize(
    ("requested", "canonical"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("fast", "gpt-4o-mini"),
        ("claude-sonnet-4-5-latest", "claude-sonnet-4-5"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        # A snapshot whose price differs from its base model's is listed on its own.
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
    ],
)
def test_resolve_by_name_alias_and_snapshot(
    table: PriceTable, requested: str, canonical: str
) -> None:
    assert price(table, requested).name == canonical


@pytest.mark.parametrize(
    "unknown",
    ["nope", "gpt-4o-mini-2024", "gpt-4o-mini-2024-07", "ft:gpt-4o-mini:org::abc", "GPT-4O", ""],
)
def test_unknown_models_resolve_to_none(table: PriceTable, unknown: str) -> None:
    assert table.resolve(unknown) is None


def test_aliases_index(table: PriceTable) -> None:
    aliases = table.aliases()
    assert aliases["fast"] == "gpt-4o-mini"
    assert aliases["claude-sonnet-4-5-latest"] == "claude-sonnet-4-5"
    assert not set(aliases) & set(table.names())


def test_to_list_gives_usd_as_decimal_strings(table: PriceTable) -> None:
    rows = {row["name"]: row for row in table.to_list()}
    assert [row["name"] for row in table.to_list()] == table.names()
    assert rows["gpt-4o-mini"] == {
        "name": "gpt-4o-mini",
        "provider": "openai",
        "input": "0.15",
        "cached_input": "0.075",
        "cache_write": "0.15",  # no cache writes of their own: the input price
        "cache_write_1h": "0.15",
        "output": "0.6",
        "max_output_tokens": 16384,
        "context_window": 128_000,
        "free": False,
        "aliases": ["fast"],
        "tiers": [],
        "service_tiers": {"priority": {"input": "0.25", "cached_input": "0.125",
                                       "cache_write": "0.25", "cache_write_1h": "0.25",
                                       "output": "1"}},
        "tool_fees": {"code_interpreter": "0.03", "file_search": "0.0025", "mcp": "0",
                      "web_search": "0.01", "web_search_preview": "0.025"},
        "betas": {},
    }


def test_to_list_round_trips_as_overrides(table: PriceTable) -> None:
    overrides = {row.pop("name"): row for row in table.to_list()}
    assert PriceTable.load(overrides).to_list() == table.to_list()


def test_override_adds_a_model() -> None:
    table = PriceTable.load(
        {"llama-3-70b": {"provider": "openai", "input": "0.59", "output": 0.79, "aliases": ["l3"],
                         "max_output_tokens": 8192, "context_window": 128_000}}
    )
    added = price(table, "l3")
    assert added.name == "llama-3-70b"
    assert added.input_micros_per_mtok == 590_000
    assert added.cached_input_micros_per_mtok == 590_000
    assert added.output_micros_per_mtok == 790_000
    assert added.max_output_tokens == 8192
    assert "gpt-4o" in table.names()


@pytest.mark.parametrize("missing", ["max_output_tokens", "context_window"])
def test_a_new_model_must_give_its_limits(missing: str) -> None:
    entry = {"provider": "openai", "input": 1, "output": 2, "max_output_tokens": 128_000,
             "context_window": 400_000}
    del entry[missing]
    # a silent default would be a wrong bound: the call goes out with whatever it asks for
    with pytest.raises(ValueError, match=rf"prices\.gpt-next\.{missing}: required"):
        PriceTable.load({"gpt-next": entry})


def test_override_adds_a_free_model_without_prices() -> None:
    table = PriceTable.load({"local": {"provider": "openai", "free": True,
                                       "max_output_tokens": 10, "context_window": 100}})
    assert price(table, "local").free


def test_override_changes_only_the_fields_it_gives() -> None:
    table = PriceTable.load({"gpt-4o": {"input": 2, "max_output_tokens": 1000}})
    changed = price(table, "gpt-4o")
    assert changed.input_micros_per_mtok == 2_000_000
    assert changed.max_output_tokens == 1000
    assert changed.output_micros_per_mtok == 10_000_000
    assert changed.cached_input_micros_per_mtok == 1_250_000


def test_override_can_make_a_model_free_and_repoint_an_alias() -> None:
    table = PriceTable.load({"gpt-4o": {"free": True}, "fast": {"alias_of": "gpt-4.1-mini"}})
    assert price(table, "gpt-4o").free
    assert price(table, "fast").name == "gpt-4.1-mini"
    assert "fast" not in price(table, "gpt-4o-mini").aliases


def test_override_repoints_an_alias_listed_under_a_model() -> None:
    table = PriceTable.load({"claude-sonnet-4-5-latest": {"alias_of": "claude-haiku-4-5"}})
    assert price(table, "claude-sonnet-4-5-latest").name == "claude-haiku-4-5"
    assert price(table, "claude-sonnet-4-5").aliases == ()


def test_override_alias_chains_resolve_to_the_model() -> None:
    table = PriceTable.load({"cheap": {"alias_of": "fast"}, "snap": {"alias_of": "o3-2025-04-16"}})
    assert price(table, "cheap").name == "gpt-4o-mini"
    assert price(table, "snap").name == "o3"


def test_shipped_file_is_not_changed_by_an_override() -> None:
    PriceTable.load({"gpt-4o": {"input": 99}})
    assert price(PriceTable.load(), "gpt-4o").input_micros_per_mtok == 2_500_000


LIMITS = {"max_output_tokens": 100, "context_window": 1000}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gpt-4o": {"input": "cheap"}}, r"prices\.gpt-4o\.input"),
        ({"gpt-4o": {"input": -1}}, r"prices\.gpt-4o\.input"),
        ({"gpt-4o": {"output": True}}, r"prices\.gpt-4o\.output"),
        ({"gpt-4o": {"output": None}}, r"prices\.gpt-4o\.output"),
        ({"gpt-4o": {"max_output_tokens": -5}}, r"prices\.gpt-4o\.max_output_tokens"),
        ({"gpt-4o": {"max_output_tokens": 1.5}}, r"prices\.gpt-4o\.max_output_tokens"),
        ({"gpt-4o": {"context_window": 0}}, r"prices\.gpt-4o\.context_window"),
        ({"gpt-4o": {"provider": "Acme Corp"}}, r"prices\.gpt-4o\.provider"),
        ({"gpt-4o": {"free": "yes"}}, r"prices\.gpt-4o\.free"),
        ({"gpt-4o": {"aliases": "four"}}, r"prices\.gpt-4o\.aliases"),
        ({"gpt-4o": {"inptu": 1}}, r"prices\.gpt-4o: unknown field 'inptu'"),
        ({"gpt-4o": 3}, r"prices\.gpt-4o: expected a mapping"),
        ({"new-model": {"input": 1, "output": 2, **LIMITS}}, r"prices\.new-model\.provider: req"),
        ({"new-model": {"provider": "openai", "input": 1, **LIMITS}}, r"prices\.new-model\.output"),
        ({"x": {"alias_of": "nothing-like-it"}}, r"prices\.x\.alias_of: unknown model"),
        ({"x": {"alias_of": "gpt-4o", "input": 1}}, r"prices\.x: alias_of cannot be combined"),
        ({"a": {"alias_of": "b"}, "b": {"alias_of": "a"}}, r"alias cycle"),
        ({"gpt-4o": {"aliases": ["fast"]}}, r"prices\.fast\.alias_of: 'fast' is also an alias"),
        ({"o3": {"aliases": ["gpt-5-latest"]}, "gpt-5": {"aliases": ["gpt-5-latest"]}}, r"also"),
        ({"gpt-4o": {"aliases": ["o3"]}}, r"'o3' is already a model name"),
        ({"claude-sonnet-4-5-latest": {"input": 1}}, r"is an alias of 'claude-sonnet-4-5'"),
        ({"": {"input": 1}}, r"model name must be a non-empty string"),
    ],
)
def test_bad_overrides_name_the_model_and_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PriceTable.load(overrides)


ONE = {"input": 1, "output": 1}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tiers", [{"input": 5, "output": 20}], r"tiers\[0\]\.threshold: required"),
        ("tiers", {"threshold": 1}, r"tiers: expected a list"),
        ("tiers", [{"threshold": 0, **ONE}], r"tiers\[0\]\.threshold: expected an integer >= 1"),
        ("tiers", [{"threshold": 9, "input": 1}], r"tiers\[0\]\.output: required"),
        ("tiers", [{"threshold": 9, **ONE}, {"threshold": 9, **ONE}],
         r"tiers\[1\]\.threshold: thresholds must rise"),
        ("service_tiers", {"flex": {"input": 1}}, r"service_tiers\.flex\.output: required"),
        ("service_tiers", {"default": ONE}, r"service_tiers\.default: .* the model's own"),
        ("service_tiers", {"flex": {**ONE, "speed": 2}},
         r"service_tiers\.flex: unknown field 'speed'"),
        ("service_tiers", {"flex": {**ONE, "tiers": [ONE]}},
         r"service_tiers\.flex\.tiers\[0\]\.threshold: required"),
        ("tool_fees", {"web_search": "lots"}, r"tool_fees\.web_search: .*USD per use"),
        ("tool_fees", ["web_search"], r"tool_fees: expected a mapping"),
        ("betas", {"output-128k": {}}, r"betas\.output-128k: expected max_output_tokens or"),
        ("betas", {"output-128k": {"max_output_tokens": -1}},
         r"betas\.output-128k\.max_output_tokens: expected an integer"),
    ],
)
def test_bad_dimensions_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=rf"prices\.gpt-4o\.{message}"):
        PriceTable.load({"gpt-4o": {field: value}})


def test_overrides_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match="prices: expected a mapping"):
        PriceTable.load(["gpt-4o"])  # type: ignore[arg-type]
