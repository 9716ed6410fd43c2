"""Settlement cost from each provider's reported `usage`."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.pricing import ModelPrice, PriceTable, usage_cost

TABLE = PriceTable.load()


def price(name: str) -> ModelPrice:
    found = TABLE.resolve(name)
    assert found is not None
    return found


def test_openai_chat_usage_with_cached_prompt_tokens() -> None:
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    # 976 x $2.50/M + 1024 x $1.25/M + 300 x $10/M = 2440 + 1280 + 3000 micro-USD
    assert usage_cost("openai.chat", usage, price("gpt-4o")) == (2300, 6720)


def test_openai_completions_usage_rounds_up() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    # 5 x 1.5 + 7 x 2.0 = 21.5 micro-USD
    assert usage_cost("openai.completions", usage, price("gpt-3.5-turbo-instruct")) == (12, 22)


def test_openai_responses_usage() -> None:
    usage = {
        "input_tokens": 10_000,
        "input_tokens_details": {"cached_tokens": 8_000},
        "output_tokens": 1_000,
        "output_tokens_details": {"reasoning_tokens": 600},
        "total_tokens": 11_000,
    }
    # 2000 x $1.25/M + 8000 x $0.125/M + 1000 x $10/M = 2500 + 1000 + 10000
    assert usage_cost("openai.responses", usage, price("gpt-5")) == (11_000, 13_500)


def test_openai_embeddings_usage() -> None:
    usage = {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000}
    assert usage_cost("openai.embeddings", usage, price("text-embedding-3-large")) == (
        1_000_000,
        130_000,
    )


def test_anthropic_usage_with_cache_writes_and_reads() -> None:
    usage = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 2_000,
        "cache_read_input_tokens": 10_000,
        "output_tokens": 500,
        "service_tier": "standard",
    }
    # 100 x $3/M + 2000 x $3.75/M (a 5-minute cache write: 1.25 x input) + 10000 x $0.30/M
    # + 500 x $15/M = 300 + 7500 + 3000 + 7500
    assert usage_cost("anthropic.messages", usage, price("claude-sonnet-4-5")) == (12_600, 18_300)


def test_anthropic_cache_writes_are_priced_by_their_lifetime() -> None:
    usage = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 3_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000,
                           "ephemeral_1h_input_tokens": 2_000},
        "output_tokens": 500,
    }
    # 100 x $3/M + 1000 x $3.75/M + 2000 x $6/M (an hour: 2 x input) + 500 x $15/M
    assert usage_cost("anthropic.messages", usage, price("claude-sonnet-4-5")) == (
        3_600, 300 + 3_750 + 12_000 + 7_500)
    # the breakdown alone (no total) counts as well
    del usage["cache_creation_input_tokens"]
    assert usage_cost("anthropic.messages", usage, price("claude-sonnet-4-5")) == (
        3_600, 300 + 3_750 + 12_000 + 7_500)


def test_configured_cache_write_prices_win() -> None:
    table = PriceTable.load({"claude-sonnet-4-5": {"cache_write": 4, "cache_write_1h": 5}})
    usage = {"cache_creation_input_tokens": 100_000,
             "cache_creation": {"ephemeral_1h_input_tokens": 25_000}}
    assert usage_cost("anthropic.messages", usage, table.resolve("claude-sonnet-4-5")) == (
        100_000, 75_000 * 4 + 25_000 * 5)


def test_anthropic_usage_merged_from_a_stream() -> None:
    # message_start carries input usage and a provisional output count; message_delta the final
    # output count. The gateway merges them, later pieces winning.
    start = {"input_tokens": 25, "cache_read_input_tokens": 0, "output_tokens": 1}
    delta = {"output_tokens": 40}
    total, cost = usage_cost("anthropic.messages", {**start, **delta}, price("claude-3-5-haiku"))
    assert total == 65
    assert cost == 180  # 25 x 0.8 + 40 x 4 micro-USD


def test_count_tokens_costs_nothing() -> None:
    assert usage_cost("anthropic.count_tokens", {"input_tokens": 99}, price("claude-opus-4")) == (
        0,
        0,
    )


def test_unknown_price_reports_tokens_without_cost() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    assert usage_cost("openai.chat", usage, None) == (15, None)


def test_free_model_usage_costs_nothing() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    assert usage_cost("openai.chat", usage, price("sim-free")) == (15, 0)


@pytest.mark.parametrize(
    "usage",
    [
        {},
        {"prompt_tokens": None, "completion_tokens": "7"},
        {"prompt_tokens": -3, "completion_tokens": True, "prompt_tokens_details": None},
    ],
)
def test_missing_or_malformed_counts_read_as_zero(usage: dict[str, Any]) -> None:
    assert usage_cost("openai.chat", usage, price("gpt-4o")) == (0, 0)


def test_cached_tokens_never_exceed_the_prompt() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 50},
    }
    # All ten prompt tokens at the cached price: 10 x 1.25 = 12.5 micro-USD.
    assert usage_cost("openai.chat", usage, price("gpt-4o")) == (10, 13)


def test_unknown_route_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown route"):
        usage_cost("stripe", {}, None)
