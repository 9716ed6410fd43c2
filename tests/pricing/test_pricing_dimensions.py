"""Prices with dimensions: service tiers, input-length tiers, server-side tool fees and beta
limits, in the reservation (the dearest outcome the request allows) and in the settlement
(what the answer reports)."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.errors import BadRequest
from outlay.pricing import ModelPrice, PriceTable, cost_of, estimate, usage_cost
from outlay.pricing.estimate import beta_names, clamp_patch
from outlay.pricing.tools import DEFAULT_MAX_USES
from outlay.pricing.usage import openai_tool_uses, reported_tier

TABLE = PriceTable.load()
SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def price(name: str) -> ModelPrice:
    found = TABLE.resolve(name)
    assert found is not None
    return found


def responses(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5", "input": "hi", "max_output_tokens": 1000, **extra}


def claude(model: str = "claude-sonnet-4-5", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}],
            **extra}


# --- service tiers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "default", "tier", "in_out"), [
    (None, None, None, (1_250_000, 10_000_000)),
    ("auto", None, None, (1_250_000, 10_000_000)),
    ("default", "priority", "default", (1_250_000, 10_000_000)),
    ("priority", None, "priority", (2_500_000, 20_000_000)),
    ("flex", None, "flex", (625_000, 5_000_000)),
    ("auto", "priority", "priority", (2_500_000, 20_000_000)),  # the project's default tier
    (None, "flex", "flex", (625_000, 5_000_000)),
])
def test_an_openai_call_is_reserved_at_the_tier_it_can_land_in(
        asked: str | None, default: str | None, tier: str | None, in_out: tuple[int, int]
) -> None:
    body = responses() if asked is None else responses(service_tier=asked)
    est = estimate("openai.responses", body, price("gpt-5"), tier_default=default)
    assert est.tier == tier
    assert est.cost_micros == -(-(est.input_tokens * in_out[0] + 1000 * in_out[1])
                                // 1_000_000)


def test_a_tier_the_table_does_not_price_is_unknown() -> None:
    est = estimate("openai.chat", {"model": "gpt-4o", "messages": [{"role": "user",
                                   "content": "hi"}], "service_tier": "flex"}, price("gpt-4o"))
    assert est.cost_micros is None
    assert est.unpriced == "the 'flex' service tier of model 'gpt-4o'"


def test_anthropic_auto_lands_in_the_accounts_tier() -> None:
    assert estimate("anthropic.messages", claude(), price("claude-sonnet-4-5")).tier is None
    # an account with priority capacity: Anthropic's priority tier is not in the shipped table
    est = estimate("anthropic.messages", claude(service_tier="auto"), price("claude-sonnet-4-5"),
                   tier_default="priority")
    assert (est.tier, est.cost_micros) == ("priority", None)
    only = estimate("anthropic.messages", claude(service_tier="standard_only"),
                    price("claude-sonnet-4-5"), tier_default="priority")
    assert (only.tier, only.cost_micros is not None) == ("standard", True)


@pytest.mark.parametrize("tier", [5, True, ["priority"], {"tier": "flex"}])
def test_a_service_tier_that_is_not_a_string_is_refused(tier: object) -> None:
    with pytest.raises(BadRequest, match="`service_tier` must be a string") as raised:
        estimate("openai.chat", {"model": "gpt-5", "messages": [{"role": "user", "content": "x"}],
                                 "service_tier": tier}, price("gpt-5"))
    assert raised.value.details["param"] == "service_tier"


def test_settlement_prices_the_tier_the_answer_reports() -> None:
    usage = {"input_tokens": 10_000, "output_tokens": 10_000}
    gpt5 = price("gpt-5")
    assert usage_cost("openai.responses", usage, gpt5, tier="priority") == (20_000, 225_000)
    assert usage_cost("openai.responses", usage, gpt5, tier="default") == (20_000, 112_500)
    assert usage_cost("openai.responses", usage, gpt5, tier="flex") == (20_000, 56_250)
    # a tier the table does not price: the one the reservation assumed
    assert usage_cost("openai.responses", usage, gpt5, tier="scale",
                      fallback_tier="priority") == (20_000, 225_000)
    haiku = price("claude-haiku-4-5")
    batch = {"input_tokens": 1_000_000, "output_tokens": 0, "service_tier": "batch"}
    assert usage_cost("anthropic.messages", batch, haiku) == (1_000_000, 500_000)


def test_the_reported_tier_is_read_where_each_provider_puts_it() -> None:
    assert reported_tier({"service_tier": "priority", "usage": {}}) == "priority"
    assert reported_tier({"type": "response.completed",
                          "response": {"service_tier": "flex"}}) == "flex"
    assert reported_tier({"type": "message_start",
                          "message": {"usage": {"service_tier": "batch"}}}) == "batch"
    assert reported_tier({"usage": {"service_tier": "standard"}}) == "standard"
    assert reported_tier({"usage": {}}) is None


# --- input-length tiers -----------------------------------------------------------------------


def test_past_the_threshold_the_whole_call_is_billed_at_long_context_prices() -> None:
    sonnet = price("claude-sonnet-4-5")
    usage = {"input_tokens": 300_000, "output_tokens": 1_000}
    assert usage_cost("anthropic.messages", usage, sonnet) == (301_000, 1_822_500)
    under = {"input_tokens": 200_000, "output_tokens": 1_000}
    assert usage_cost("anthropic.messages", under, sonnet) == (201_000, 615_000)
    # cache reads and writes count toward the threshold, and pay their long prices
    cached = {"input_tokens": 1_000, "cache_read_input_tokens": 250_000, "output_tokens": 0}
    assert usage_cost("anthropic.messages", cached, sonnet) == (251_000, 6_000 + 150_000)


def test_a_long_input_is_reserved_at_long_context_prices() -> None:
    text = "x" * 300_000
    body = claude(messages=[{"role": "user", "content": text}])
    plain = estimate("anthropic.messages", body, price("claude-sonnet-4-5"))
    # without the beta the provider refuses more than 200k tokens: the bound stops there
    assert plain.input_tokens == 200_000
    assert plain.cost_micros == cost_of(200_000, 0, 1000, price("claude-sonnet-4-5"))
    long = estimate("anthropic.messages", body, price("claude-sonnet-4-5"),
                    betas=("context-1m",))
    assert long.input_tokens > 300_000
    assert long.cost_micros == -(-(long.input_tokens * 6_000_000 + 1000 * 22_500_000)
                                 // 1_000_000)


def test_batch_tier_has_its_own_long_context_prices() -> None:
    usage = {"input_tokens": 300_000, "output_tokens": 0, "service_tier": "batch"}
    assert usage_cost("anthropic.messages", usage, price("claude-sonnet-4-5")) == (
        300_000, 900_000)


# --- beta headers -----------------------------------------------------------------------------


def test_beta_names_drop_their_dates() -> None:
    assert beta_names("output-128k-2025-02-19, context-1m-2025-08-07,,x") == (
        "output-128k", "context-1m", "x")
    assert beta_names(None) == ()


def test_the_output_128k_beta_raises_the_output_bound() -> None:
    body = claude("claude-3-7-sonnet", max_tokens=128_000)
    plain = estimate("anthropic.messages", body, price("claude-3-7-sonnet"))
    assert plain.output_tokens == 64_000
    lifted = estimate("anthropic.messages", body, price("claude-3-7-sonnet"),
                      betas=("output-128k",))
    assert lifted.output_tokens == 128_000
    assert lifted.cost_micros is not None
    assert lifted.cost_micros >= 128_000 * 15


def test_a_beta_a_model_does_not_list_changes_nothing() -> None:
    body = claude("claude-haiku-4-5", max_tokens=100_000)
    assert estimate("anthropic.messages", body, price("claude-haiku-4-5"),
                    betas=("output-128k",)).output_tokens == 64_000


# --- server-side tools ------------------------------------------------------------------------


def test_anthropic_web_search_reserves_every_use_and_iteration() -> None:
    sonnet = price("claude-sonnet-4-5")
    est = estimate("anthropic.messages", claude(tools=[{**SEARCH, "max_uses": 20}]), sonnet)
    assert est.input_tokens == 21 * 200_000  # the first iteration and one per search
    # past 200k input tokens: long-context prices; and 20 searches at $0.01
    assert est.cost_micros == 21 * 200_000 * 6 + -(-1000 * 22_500_000 // 1_000_000) + 200_000
    assert est.fees == (("web_search", 10_000),)
    # the request bounds its own uses: only its named maximum output may be lowered
    assert est.clamp is not None
    assert est.clamp.named
    assert est.max_field == "max_tokens"
    assert est.body_patch == {}


def test_anthropic_server_tools_without_max_uses_get_one_that_the_clamp_can_lower() -> None:
    sonnet = price("claude-sonnet-4-5")
    fetch = {"type": "web_fetch_20250910", "name": "web_fetch"}
    body = claude(tools=[SEARCH, {**fetch, "max_uses": 2}, {"name": "f", "input_schema": {}}])
    est = estimate("anthropic.messages", body, sonnet)
    assert est.max_field == "max_uses"
    assert est.clamp is not None
    assert (est.clamp.limit, est.clamp.floor) == (DEFAULT_MAX_USES, 1)
    tools = est.body_patch["tools"]
    assert tools[0]["max_uses"] == DEFAULT_MAX_USES
    assert tools[1:] == body["tools"][1:]  # a bound of its own, a client tool: as they were
    assert est.clamp.cost(DEFAULT_MAX_USES) == est.cost_micros
    for n in (1, 4):
        asked = estimate("anthropic.messages",
                         {**body, "tools": [{**SEARCH, "max_uses": n}, *body["tools"][1:]]},
                         sonnet)
        assert est.clamp.cost(n) == asked.cost_micros
        assert clamp_patch("anthropic.messages", body, est, n)["tools"][0]["max_uses"] == n
        assert est.input_tokens - (est.clamp.limit - n) * est.clamp.choices == \
            asked.input_tokens


def test_openai_built_in_tools_without_max_tool_calls_get_one() -> None:
    gpt5 = price("gpt-5")
    body = responses(tools=[{"type": "web_search"}, {"type": "file_search"},
                            {"type": "code_interpreter", "container": {"type": "auto"}}])
    est = estimate("openai.responses", body, gpt5)
    assert est.body_patch == {"max_tool_calls": DEFAULT_MAX_USES}
    assert est.max_field == "max_tool_calls"
    assert est.clamp is not None
    # each call at the dearest per-call fee ($0.01), plus one container ($0.03)
    assert est.fees == (("code_interpreter", 30_000), ("file_search", 2_500),
                        ("web_search", 10_000))
    for n in (0, 1, 3):
        asked = estimate("openai.responses", {**body, "max_tool_calls": n}, gpt5)
        assert est.clamp.cost(n) == asked.cost_micros, n
    one = estimate("openai.responses", {**body, "max_tool_calls": 1}, gpt5)
    assert one.input_tokens == 2 * 400_000
    assert one.cost_micros == 2 * 400_000 * 1_250_000 // 1_000_000 + 10_000 + 10_000 + 30_000


def test_a_tool_whose_fee_is_unknown_is_unpriced() -> None:
    body = claude(tools=[{"type": "code_execution_20250825", "name": "code_execution"}])
    est = estimate("anthropic.messages", body, price("claude-sonnet-4-5"))
    assert est.cost_micros is None
    assert est.unpriced == "the 'code_execution' tool on model 'claude-sonnet-4-5'"


@pytest.mark.parametrize("bad", [-1, "3", 2.5, True])
def test_a_bound_on_uses_must_be_a_non_negative_integer(bad: object) -> None:
    with pytest.raises(BadRequest, match=r"`tools\[0\]\.max_uses` must be a non-negative"):
        estimate("anthropic.messages", claude(tools=[{**SEARCH, "max_uses": bad}]),
                 price("claude-sonnet-4-5"))
    with pytest.raises(BadRequest, match="`max_tool_calls` must be a non-negative"):
        estimate("openai.responses", responses(tools=[{"type": "web_search"}],
                                               max_tool_calls=bad), price("gpt-5"))


def test_settlement_charges_each_reported_use() -> None:
    sonnet = price("claude-sonnet-4-5")
    usage = {"input_tokens": 500, "output_tokens": 0,
             "server_tool_use": {"web_search_requests": 20, "web_fetch_requests": 3}}
    assert usage_cost("anthropic.messages", usage, sonnet) == (500, 1_500 + 200_000)
    gpt5 = price("gpt-5")
    response = {"output": [
        {"type": "web_search_call"}, {"type": "web_search_call"}, {"type": "file_search_call"},
        {"type": "code_interpreter_call", "container_id": "c1"},
        {"type": "code_interpreter_call", "container_id": "c1"},
        {"type": "message"}]}
    uses = openai_tool_uses(response)
    assert uses == {"web_search": 2, "file_search": 1, "code_interpreter": 1}
    cost = usage_cost("openai.responses", {"input_tokens": 0, "output_tokens": 0}, gpt5,
                      tool_uses=uses, fees={"web_search": 25_000})
    assert cost == (0, 2 * 25_000 + 2_500 + 30_000)
