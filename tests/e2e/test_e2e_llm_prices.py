"""Every LLM call charged what the provider bills, through the official `openai` and
`anthropic` SDKs against a real gateway whose simulated providers report service tiers, long
inputs and server-side tool uses as the real APIs do; streamed and not.

Expected bills are computed here from the published list prices, not by Outlay's code.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml

from .conftest import _launcher
from .harness import Gateway, micros, outlay_bin, server_env, unique

pytestmark = pytest.mark.e2e

# USD per million tokens (input, output) as the providers publish them, and this gateway's
# contract price of Claude Haiku 4.5 on Anthropic's priority tier
LIST: dict[tuple[str, str], tuple[str, str]] = {
    ("gpt-5", "default"): ("1.25", "10"),
    ("gpt-5", "priority"): ("2.50", "20"),
    ("gpt-5", "flex"): ("0.625", "5"),
    ("claude-haiku-4-5", "standard"): ("1", "5"),
    ("claude-haiku-4-5", "priority"): ("1.50", "7.50"),
    ("claude-sonnet-4-5", "standard"): ("3", "15"),
    ("claude-sonnet-4-5", "long"): ("6", "22.50"),  # past 200k input tokens
    ("sim-max-claude", "standard"): ("3", "15"),
    ("sim-max-gpt", "default"): ("1.25", "10"),
}
SEARCH_USD = Decimal("0.01")
SEARCH = {"type": "web_search_20250305", "name": "web_search"}
CONFIG: dict[str, Any] = {
    "max_body_bytes": 4_000_000,
    "simulated": {"latency_ms": 0},
    # an Anthropic account with priority capacity: `auto` runs there
    "providers": {"anthropic": {"service_tier_default": "priority"}},
    "prices": {
        "claude-haiku-4-5": {"service_tiers": {"priority": {"input": "1.50", "output": "7.50"}}},
        # models the simulator bills every output token allowed for
        "sim-max-gpt": {"provider": "openai", "input": "1.25", "output": 10,
                        "max_output_tokens": 128_000, "context_window": 400_000},
        "sim-max-claude": {"provider": "anthropic", "input": 3, "output": 15,
                           "max_output_tokens": 64_000, "context_window": 200_000,
                           "betas": {"output-128k": {"max_output_tokens": 128_000}}},
    },
}
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def priced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Gateway]:
    with _launcher(request.config, tmp_path_factory.mktemp("prices")) as start:
        yield start(CONFIG, name="prices")


def bill(model: str, tier: str, input_tokens: int, output_tokens: int,
         extra_usd: Decimal = Decimal(0)) -> int:
    """Micro-USD the provider bills, rounded up once as Outlay does."""
    per_in, per_out = (Decimal(p) for p in LIST[(model, tier)])
    exact = input_tokens * per_in + output_tokens * per_out + extra_usd * 1_000_000
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def openai_client(gateway: Gateway, **key_fields: Any) -> tuple[openai.OpenAI, str]:
    minted = gateway.mint_key(unique("price"), **key_fields)
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                         timeout=30), f"key:{minted['id']}"


def anthropic_client(gateway: Gateway, **key_fields: Any) -> tuple[anthropic.Anthropic, str]:
    minted = gateway.mint_key(unique("price"), **key_fields)
    return anthropic.Anthropic(base_url=gateway.url, api_key=minted["key"], max_retries=0,
                               timeout=30), f"key:{minted['id']}"


def hard(usd: str) -> dict[str, Any]:
    return {"policy": {"budgets": [{"usd": usd, "period": "day", "mode": "hard"}]}}


def strict(usd: str) -> dict[str, Any]:
    """A hard budget that refuses a call not fitting as asked (no clamping, §2.6)."""
    return {"policy": {**hard(usd)["policy"], "clamp_max_tokens": False}}


def only(gateway: Gateway, scope: str) -> dict[str, Any]:
    (entry,) = gateway.audit(scope)
    assert entry["overrun_usd"] is None, entry  # no bound in this file is ever wrong
    return entry


def respond(client: openai.OpenAI, stream: bool, **kwargs: Any) -> Any:
    """A Responses call, streamed or not: the final response object."""
    if not stream:
        return client.responses.create(**kwargs)
    events = list(client.responses.create(stream=True, **kwargs))
    assert events[-1].type in ("response.completed", "response.incomplete")
    return events[-1].response


def message(client: anthropic.Anthropic, stream: bool, **kwargs: Any) -> Any:
    """A Messages call, streamed or not: the final message (usage as the stream reported)."""
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        return events.get_final_message()


# --- service tiers ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tier", ["priority", "flex", "default", "auto"])
def test_an_openai_tier_is_charged_at_its_prices(priced: Gateway, tier: str,
                                                 stream: bool) -> None:
    client, scope = openai_client(priced)
    with client:
        response = respond(client, stream, model="gpt-5", input="Say hello.",
                           max_output_tokens=64, service_tier=tier)
    reported = "default" if tier == "auto" else tier
    assert response.service_tier == reported
    assert response.usage is not None
    expected = bill("gpt-5", reported, response.usage.input_tokens,
                    response.usage.output_tokens)
    assert micros(only(priced, scope)["cost_usd"]) == expected


@pytest.mark.parametrize("stream", [False, True])
def test_a_priority_chat_completion_is_charged_at_priority_prices(
        priced: Gateway, stream: bool) -> None:
    client, scope = openai_client(priced)
    with client:
        if stream:
            chunks = list(client.chat.completions.create(
                model="gpt-5", messages=HI, max_completion_tokens=64, service_tier="priority",
                stream=True, stream_options={"include_usage": True}))
            usage, tier = chunks[-1].usage, chunks[-1].service_tier
        else:
            answer = client.chat.completions.create(
                model="gpt-5", messages=HI, max_completion_tokens=64, service_tier="priority")
            usage, tier = answer.usage, answer.service_tier
    assert tier == "priority"
    assert usage is not None
    expected = bill("gpt-5", "priority", usage.prompt_tokens, usage.completion_tokens)
    assert micros(only(priced, scope)["cost_usd"]) == expected


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("asked", ["auto", "standard_only"])
def test_an_anthropic_tier_is_read_from_its_usage(priced: Gateway, asked: str,
                                                  stream: bool) -> None:
    client, scope = anthropic_client(priced)
    with client:
        final = message(client, stream, model="claude-haiku-4-5", max_tokens=64, messages=HI,
                        service_tier=asked)
    tier = "priority" if asked == "auto" else "standard"  # the account has priority capacity
    assert final.usage.service_tier == tier
    expected = bill("claude-haiku-4-5", tier, final.usage.input_tokens,
                    final.usage.output_tokens)
    assert micros(only(priced, scope)["cost_usd"]) == expected


def test_priority_refused_before_the_call_where_only_standard_fits(priced: Gateway) -> None:
    # a bound of about $0.01 at standard prices, $0.02 at priority's
    client, scope = openai_client(priced, **strict("0.015"))
    with client:
        with pytest.raises(openai.APIStatusError) as refused:
            client.responses.create(model="gpt-5", input="hi", max_output_tokens=1000,
                                    service_tier="priority")
        assert refused.value.status_code == 402
        assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]
        allowed = client.responses.create(model="gpt-5", input="hi", max_output_tokens=1000)
    assert allowed.service_tier == "default"
    refusal, admitted = sorted(priced.audit(scope), key=lambda e: e["time"] + e["decision"])
    assert (refusal["decision"], refusal["reserved_usd"], refusal["status"]) == (
        "refused", "0", 402)
    assert admitted["decision"] == "allowed"


# --- long context -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_long_input_is_charged_at_long_context_prices(priced: Gateway, stream: bool) -> None:
    client, scope = anthropic_client(priced)
    text = "word " * 240_000  # 1.2 MB: 300,000 tokens by the simulator's count
    with client:
        final = message(client, stream, model="claude-sonnet-4-5", max_tokens=64,
                        messages=[{"role": "user", "content": text}],
                        service_tier="standard_only",
                        extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert final.usage.input_tokens > 200_000
    expected = bill("claude-sonnet-4-5", "long", final.usage.input_tokens,
                    final.usage.output_tokens)
    assert micros(only(priced, scope)["cost_usd"]) == expected


# --- server-side tools ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_web_searches_are_charged_their_fee(priced: Gateway, stream: bool) -> None:
    client, scope = anthropic_client(priced)
    with client:
        final = message(client, stream, model="claude-haiku-4-5", max_tokens=64, messages=HI,
                        service_tier="standard_only", tools=[{**SEARCH, "max_uses": 20}])
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 20
    expected = bill("claude-haiku-4-5", "standard", final.usage.input_tokens,
                    final.usage.output_tokens, 20 * SEARCH_USD)
    assert micros(only(priced, scope)["cost_usd"]) == expected


@pytest.mark.parametrize("stream", [False, True])
def test_openai_web_search_calls_are_charged_their_fee(priced: Gateway, stream: bool) -> None:
    client, scope = openai_client(priced)
    with client:
        response = respond(client, stream, model="gpt-5", input="Find it.",
                           max_output_tokens=64, tools=[{"type": "web_search"}],
                           max_tool_calls=3)
    calls = [item for item in response.output if item.type == "web_search_call"]
    assert len(calls) == 3
    assert response.usage is not None
    expected = bill("gpt-5", "default", response.usage.input_tokens,
                    response.usage.output_tokens, 3 * SEARCH_USD)
    assert micros(only(priced, scope)["cost_usd"]) == expected


@pytest.mark.parametrize("stream", [False, True])
def test_a_search_without_max_uses_is_bounded_to_fit_the_budget(
        priced: Gateway, stream: bool) -> None:
    # each search may add an iteration that reads Sonnet's whole 200k window again, at
    # long-context prices: $1.21 a search, $1.22 for the first iteration; $5 fits 3
    client, scope = anthropic_client(priced, **hard("5"))
    with client:
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=1000, messages=HI, stream=stream,
            service_tier="standard_only", tools=[SEARCH])
        if stream:
            events = list(raw.parse())
            usage = events[-2].usage  # message_delta: the totals
            searches = usage.server_tool_use.web_search_requests
        else:
            final = raw.parse()
            usage, searches = final.usage, final.usage.server_tool_use.web_search_requests
    assert raw.headers["x-outlay-max-tool-uses"] == "3"
    assert searches == 3  # the simulated model used every search it was allowed
    entry = only(priced, scope)
    assert micros(entry["reserved_usd"]) <= 5_000_000
    expected = bill("claude-sonnet-4-5", "standard", usage.input_tokens, usage.output_tokens,
                    3 * SEARCH_USD)
    assert micros(entry["cost_usd"]) == expected


def test_a_search_refused_when_not_even_one_fits(priced: Gateway) -> None:
    client, scope = anthropic_client(priced, **hard("2"))
    with client, pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=1000, messages=HI,
                               service_tier="standard_only", tools=[SEARCH])
    assert refused.value.status_code == 402
    (entry,) = priced.audit(scope)
    assert (entry["decision"], entry["code"]) == ("refused", "budget_exceeded")


# --- limits a request unlocks, under a $1 hard cap --------------------------------------------


def test_the_128k_output_beta_is_bounded_at_its_limit(priced: Gateway) -> None:
    client, scope = anthropic_client(priced, **strict("1"))
    beta = {"anthropic-beta": "output-128k-2025-02-19"}
    with client:
        # 128,000 tokens at $15/M is $1.92: refused before anything is sent
        with pytest.raises(anthropic.APIStatusError) as refused:
            client.messages.create(model="sim-max-claude", max_tokens=128_000, messages=HI,
                                   service_tier="standard_only", extra_headers=beta)
        assert refused.value.status_code == 402
        fits = client.messages.create(model="sim-max-claude", max_tokens=60_000, messages=HI,
                                      service_tier="standard_only", extra_headers=beta)
    assert fits.usage.output_tokens == 60_000  # it wrote all it was allowed
    spent = micros(priced.budget(scope)["spent_usd"])
    assert spent == bill("sim-max-claude", "standard", fits.usage.input_tokens, 60_000)
    assert spent <= 1_000_000


CLAMPED_DOLLAR = {"policy": {"budgets": [{"usd": 1, "period": "day", "mode": "hard"}],
                             "clamp_max_tokens": 16}}


@pytest.mark.parametrize("stream", [False, True])
def test_an_operator_priced_model_stays_within_the_cap(priced: Gateway, stream: bool) -> None:
    client, scope = openai_client(priced, **CLAMPED_DOLLAR)
    with client:
        # $1.28 of output asked for: lowered to fit, and the provider writes every token allowed
        if stream:
            chunks = list(client.chat.completions.create(
                model="sim-max-gpt", messages=HI, stream=True, max_completion_tokens=128_000,
                stream_options={"include_usage": True}))
            usage = chunks[-1].usage
        else:
            usage = client.chat.completions.create(model="sim-max-gpt", messages=HI,
                                                   max_completion_tokens=128_000).usage
        with pytest.raises(openai.APIStatusError) as refused:  # no room for 16 tokens left
            client.chat.completions.create(model="sim-max-gpt", messages=HI)
        assert refused.value.status_code == 402
    assert usage is not None
    assert usage.completion_tokens < 128_000
    spent = micros(priced.budget(scope)["spent_usd"])
    assert spent == bill("sim-max-gpt", "default", usage.prompt_tokens, usage.completion_tokens)
    assert 900_000 < spent <= 1_000_000
    assert all(e["overrun_usd"] is None for e in priced.audit(scope))


def test_input_the_gateway_cannot_see_stays_within_the_cap(priced: Gateway) -> None:
    client, scope = openai_client(priced, **CLAMPED_DOLLAR)
    with client:
        # previous_response_id: up to the 400k window of input ($0.50) the gateway cannot see
        response = client.responses.create(model="sim-max-gpt", input="go on",
                                           previous_response_id="resp_earlier")
    assert response.usage is not None
    entry = only(priced, scope)
    assert micros(entry["reserved_usd"]) <= 1_000_000
    assert micros(entry["cost_usd"]) == bill("sim-max-gpt", "default",
                                             response.usage.input_tokens,
                                             response.usage.output_tokens)
    # the output was clamped to what the cap leaves after the unseen input's bound
    assert response.usage.output_tokens <= 50_000


def test_a_priced_model_without_its_limits_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "outlay.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "prices": {
        "gpt-next": {"provider": "openai", "input": 1, "output": 8, "context_window": 1000}}}))
    done = subprocess.run([outlay_bin(), "serve", "--config", str(config), "--state",
                           f"sqlite:///{tmp_path / 'state.db'}"], env=server_env(),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "prices.gpt-next.max_output_tokens: required" in done.stderr


# --- bad input: a clear 400 naming the field, nothing reserved or forwarded ---------------------


def test_bad_tier_and_tool_bounds_are_refused_naming_the_field(priced: Gateway) -> None:
    oa, oa_scope = openai_client(priced)
    an, an_scope = anthropic_client(priced)
    with oa, an:
        with pytest.raises(openai.BadRequestError) as tier:
            oa.responses.create(model="gpt-5", input="hi", service_tier=5)  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError) as uses:
            an.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HI,
                               tools=[{**SEARCH, "max_uses": -1}])  # type: ignore[list-item]
        with pytest.raises(openai.BadRequestError) as calls:
            oa.responses.create(model="gpt-5", input="hi", tools=[{"type": "web_search"}],
                                max_tool_calls="3")  # type: ignore[arg-type]
    assert tier.value.body["param"] == "service_tier"  # type: ignore[index]
    assert "tools[0].max_uses" in uses.value.message
    assert calls.value.body["param"] == "max_tool_calls"  # type: ignore[index]
    for scope in (oa_scope, an_scope):
        assert {(e["decision"], e["reserved_usd"]) for e in priced.audit(scope)} == {
            ("invalid", "0")}
