"""Prices of the OpenAI-compatible providers (keyed `<provider>/<model>`), checked against
the figures of their source, genai-prices; and the price of a call on a named provider."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from importlib.resources import files
from typing import Any

import pytest
import yaml
from genai_prices.data import providers

from outlay.policy.money import usd_to_micros
from outlay.pricing.genai_source import OTHER_PROVIDERS, in_force
from outlay.pricing.providers import FREE_MAX_OUTPUT_TOKENS, provider_price
from outlay.pricing.table import PriceTable

SHIPPED = yaml.safe_load(files("outlay.pricing").joinpath("prices.snapshot.yaml")
                         .read_text("utf-8"))
OWN = yaml.safe_load(files("outlay.pricing").joinpath("prices.yaml").read_text("utf-8"))
ON = date.fromisoformat(SHIPPED["generated"])
THEIRS = {name: source for source, (name, _) in OTHER_PROVIDERS.items()}
# the main models of each provider, which the shipped table must price
MAIN = {
    "gemini": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite",
               "gemini-3.1-pro-preview"],
    "mistral": ["mistral-large-2512", "mistral-medium-3-5", "mistral-small-2603", "codestral",
                "mistral-embed"],
    "deepseek": ["deepseek-chat", "deepseek-reasoner"],
    "groq": ["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "openai/gpt-oss-120b",
             "meta-llama/llama-4-scout-17b-16e-instruct"],
    "together": ["meta-llama/Llama-3.3-70B-Instruct-Turbo", "openai/gpt-oss-120b"],
    "xai": ["grok-4-0709", "grok-3", "grok-3-mini", "grok-code-fast-1"],
}


def _genai_model(provider: str, model: str) -> Any:
    source = next(p for p in providers if p.id == THEIRS[provider])
    return next(m for m in source.models if m.id == model)


def _base(value: Any) -> Decimal:
    return Decimal(value.base) if hasattr(value, "base") else Decimal(value)


def test_every_new_entry_is_the_figure_of_its_source() -> None:
    table = PriceTable.load()
    checked = 0
    for name in table.names():
        price = table.resolve(name)
        assert price is not None
        if price.provider in ("openai", "anthropic"):
            continue
        provider, model = name.split("/", 1)
        assert price.provider == provider, name
        theirs = in_force(_genai_model(provider, model).prices, ON)
        assert price.input_micros_per_mtok == usd_to_micros(_base(theirs.input_mtok)), name
        if theirs.output_mtok is not None:
            assert price.output_micros_per_mtok == usd_to_micros(_base(theirs.output_mtok)), \
                name
        if theirs.cache_read_mtok is not None:
            assert price.cached_input_micros_per_mtok == usd_to_micros(
                _base(theirs.cache_read_mtok)), name
        # no silent zero price: only an embedding model writes nothing
        assert price.input_micros_per_mtok > 0, name
        assert price.output_micros_per_mtok > 0 or "embed" in model, name
        assert not price.free, name
        assert dict(price.sources)["prices"].startswith("genai-prices "), name
        checked += 1
    assert checked >= sum(len(models) for models in MAIN.values())


@pytest.mark.parametrize("provider", sorted(MAIN))
def test_the_main_models_are_priced_with_a_source_line(provider: str) -> None:
    table = PriceTable.load()
    for model in MAIN[provider]:
        price = table.resolve(f"{provider}/{model}")
        assert price is not None, f"{provider}/{model}"
        assert price.output_micros_per_mtok > 0 or "embed" in model
    line = OWN["sources"][provider]
    assert f"genai-prices provider {THEIRS[provider]} (prices.snapshot.yaml)" in line
    assert "https://" in line


def test_overrides_take_provider_keys() -> None:
    table = PriceTable.load({
        "groq/llama-3.3-70b-versatile": {"output": "1.25"},
        "local/my-model": {"input": 1, "output": 2, "max_output_tokens": 100,
                           "context_window": 1000},
    })
    groq = table.resolve("groq/llama-3.3-70b-versatile")
    assert groq is not None
    assert (groq.output_micros_per_mtok, dict(groq.sources)["prices"]) == (1_250_000, "config")
    mine = table.resolve("local/my-model")
    assert mine is not None
    assert mine.provider == "local"  # from the name's prefix
    with pytest.raises(ValueError, match=r"prices\.plain\.provider: required"):
        PriceTable.load({"plain": {"input": 1, "output": 1, "max_output_tokens": 1,
                                   "context_window": 1}})


def test_the_price_of_a_call_on_a_provider() -> None:
    table = PriceTable.load()
    # OpenAI's models by their plain names, another provider's by its key
    gpt = provider_price(table, "openai", "gpt-4o", "gpt-4o")
    assert gpt is not None
    assert gpt.name == "gpt-4o"
    llama = provider_price(table, "groq", "llama-3.3-70b-versatile",
                           "groq/llama-3.3-70b-versatile")
    assert llama is not None
    assert llama.provider == "groq"
    # an entry of another provider is not what this call costs: unknown
    assert provider_price(table, "together", "gpt-4o", "together/gpt-4o") is None
    assert provider_price(table, "openai", "x", "groq/llama-3.3-70b-versatile") is None
    # Azure OpenAI at OpenAI's list price of the model, unless the table prices it
    azure = provider_price(table, "azure", "gpt-4o", "azure/gpt-4o", azure=True)
    assert azure is not None
    assert (azure.provider, azure.output_micros_per_mtok) == ("azure",
                                                               gpt.output_micros_per_mtok)
    assert provider_price(table, "azure", "no-such", "azure/no-such", azure=True) is None
    # a free provider costs nothing, listed or not
    local = provider_price(table, "local", "meta-llama/x", "local/meta-llama/x", free=True)
    assert local is not None
    assert local.free
    assert (local.input_micros_per_mtok, local.max_output_tokens) == (0, FREE_MAX_OUTPUT_TOKENS)
