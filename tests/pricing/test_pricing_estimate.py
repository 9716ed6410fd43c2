"""Reservation estimates: bounds on tokens and cost, body patches and request validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outlay.policy.errors import BadRequest
from outlay.pricing import ModelPrice, PriceTable, cost_of, estimate
from outlay.pricing.estimate import DEFAULT_MAX_OUTPUT_TOKENS, clamp_patch
from outlay.pricing.tokens import (
    ANTHROPIC_BUILTIN_TOOL_TOKENS,
    ANTHROPIC_TOOLS_TOKENS,
    IMAGE_TOKENS,
    IMAGE_TOKENS_GPT_4O_MINI,
    PER_MESSAGE_TOKENS,
    PER_REQUEST_TOKENS,
)

TABLE = PriceTable.load()
# Multi-byte text: BPE never yields more tokens than UTF-8 bytes, whatever the script.
TEXT = "Summarise the attached ledger. Résumé: 東京の予算 — 💸 over budget?"


def price(name: str) -> ModelPrice:
    found = TABLE.resolve(name)
    assert found is not None
    return found


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TEXT}], **extra}


def anthropic(**extra: Any) -> dict[str, Any]:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": TEXT}],
    }
    return {**body, **extra}


# --- cost arithmetic -------------------------------------------------------------------------


def test_one_token_at_fifteen_cents_per_mtok_costs_one_micro() -> None:
    assert cost_of(1, 0, 0, price("gpt-4o-mini")) == 1


def test_cost_rounds_up_once_at_the_end() -> None:
    # 0.15 + 0.6 micro-USD = 0.75, one micro; rounding each part would give two.
    assert cost_of(1, 0, 1, price("gpt-4o-mini")) == 1
    assert cost_of(3, 0, 0, price("gpt-4o-mini")) == 1  # 0.45
    assert cost_of(7, 0, 0, price("gpt-4o-mini")) == 2  # 1.05


@pytest.mark.parametrize(
    ("model", "tokens", "micros"),
    [
        ("gpt-4o", (1000, 0, 500), 7_500),  # 1000 x $2.50/M + 500 x $10/M = $0.0075
        ("gpt-4o", (1000, 1000, 0), 3_750),  # cached input at $1.25/M
        ("gpt-4o-mini", (1_000_000, 0, 1_000_000), 750_000),
        ("claude-opus-4-1", (10_000, 100_000, 2_000), 450_000),  # 0.15 + 0.15 + 0.15
        ("gpt-5-nano", (1, 1, 1), 1),  # 0.05 + 0.005 + 0.4 micro-USD
        ("text-embedding-3-small", (123_456, 0, 0), 2_470),  # 2469.12 micro-USD
    ],
)
def test_cost_of_known_cases(model: str, tokens: tuple[int, int, int], micros: int) -> None:
    assert cost_of(*tokens, price(model)) == micros


def test_free_model_costs_nothing() -> None:
    assert cost_of(10**9, 10**9, 10**9, price("sim-free")) == 0


def test_negative_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="output_tokens"):
        cost_of(1, 0, -1, price("gpt-4o"))


# --- OpenAI chat ------------------------------------------------------------------------------


def test_chat_input_bound_covers_every_byte_and_overheads() -> None:
    result = estimate("openai.chat", chat(), price("gpt-4o-mini"))
    text = len(TEXT.encode())
    assert result.input_tokens >= text + PER_MESSAGE_TOKENS + PER_REQUEST_TOKENS
    # ... but not wildly more: the role and key names only.
    assert result.input_tokens <= text + PER_MESSAGE_TOKENS + PER_REQUEST_TOKENS + 32


def test_chat_counts_system_names_tools_and_tool_calls() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "refund",
                "description": "Refund an order in full",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            },
        }
    ]
    messages = [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "name": "ops", "content": [{"type": "text", "text": TEXT}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "refund", "arguments": '{"order_id": "A-1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "refunded"},
    ]
    body = {"model": "gpt-4o", "messages": messages, "tools": tools, "max_tokens": 10}
    result = estimate("openai.chat", body, price("gpt-4o"))
    visible = (
        "You are careful.",
        TEXT,
        "ops",
        '{"order_id": "A-1"}',
        "refunded",
        json.dumps(tools),
    )
    assert result.input_tokens >= sum(len(part.encode()) for part in visible)


def test_chat_without_max_tokens_reserves_the_model_max_and_leaves_the_request() -> None:
    # the provider's own default is the model's maximum: the request goes out as it came
    result = estimate("openai.chat", chat(), price("gpt-4o-mini"))
    assert result.output_tokens == 16384
    assert result.body_patch == {}
    assert result.cost_micros == cost_of(result.input_tokens, 0, 16384, price("gpt-4o-mini"))


@pytest.mark.parametrize("model", ["gpt-4o-mini", "o3", "o4-mini-2025-04-16", "gpt-5", "fast"])
def test_chat_clamps_max_completion_tokens_which_every_chat_model_honours(model: str) -> None:
    result = estimate("openai.chat", chat(model=model), price(model))
    assert result.max_field == "max_completion_tokens"
    assert result.output_tokens == price(model).max_output_tokens


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_with_a_max_is_not_patched(field: str) -> None:
    result = estimate("openai.chat", chat(**{field: 300}), price("gpt-4o-mini"))
    assert result.output_tokens == 300
    assert result.body_patch == {}


def test_chat_with_both_maxima_reserves_the_larger() -> None:
    body = chat(max_tokens=300, max_completion_tokens=500)
    assert estimate("openai.chat", body, price("gpt-4o-mini")).output_tokens == 500


def test_null_max_tokens_counts_as_absent() -> None:
    result = estimate("openai.chat", chat(max_tokens=None), price("gpt-4o-mini"))
    assert (result.output_tokens, result.max_field) == (16384, "max_completion_tokens")


def test_max_above_the_model_max_is_capped_not_patched() -> None:
    result = estimate("openai.chat", chat(max_tokens=1_000_000), price("gpt-4o-mini"))
    assert result.output_tokens == 16384
    assert result.body_patch == {}


def test_n_multiplies_output() -> None:
    result = estimate("openai.chat", chat(max_tokens=100, n=3), price("gpt-4o-mini"))
    assert result.output_tokens == 300
    one = estimate("openai.chat", chat(max_tokens=100), price("gpt-4o-mini"))
    assert result.input_tokens == one.input_tokens


def test_predicted_output_adds_to_output() -> None:
    prediction = {"type": "content", "content": "x" * 1000}
    result = estimate("openai.chat", chat(max_tokens=100, prediction=prediction), price("gpt-4o"))
    assert result.output_tokens >= 1100


def test_stream_asks_for_usage() -> None:
    result = estimate("openai.chat", chat(stream=True, max_tokens=5), price("gpt-4o-mini"))
    assert result.body_patch == {"stream_options": {"include_usage": True}}


def test_stream_options_are_merged() -> None:
    body = chat(stream=True, max_tokens=5, stream_options={"include_obfuscation": False})
    result = estimate("openai.chat", body, price("gpt-4o-mini"))
    assert result.body_patch == {
        "stream_options": {"include_obfuscation": False, "include_usage": True}
    }
    assert body["stream_options"] == {"include_obfuscation": False}  # the body is not mutated


def test_stream_without_a_max_patches_only_its_usage() -> None:
    result = estimate("openai.chat", chat(stream=True), price("gpt-4o"))
    assert result.body_patch == {"stream_options": {"include_usage": True}}
    assert result.output_tokens == 16384


def test_unknown_price_has_no_cost_and_a_default_output() -> None:
    result = estimate("openai.chat", chat(model="mystery"), None)
    assert result.cost_micros is None
    assert result.output_tokens == DEFAULT_MAX_OUTPUT_TOKENS
    assert result.body_patch == {}
    assert result.input_tokens >= len(TEXT.encode())


def test_unknown_price_keeps_a_requested_max_uncapped() -> None:
    result = estimate("openai.chat", chat(model="mystery", max_tokens=250_000), None)
    assert result.output_tokens == 250_000


def test_free_model_reserves_nothing() -> None:
    result = estimate("openai.chat", chat(model="sim-free"), price("sim-free"))
    assert result.cost_micros == 0
    assert result.body_patch == {}


def test_images_count_a_fixed_bound_not_their_bytes() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    content = [{"type": "text", "text": "what is this?"}, image, image]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    result = estimate("openai.chat", body, price("gpt-4o"))
    assert 2 * IMAGE_TOKENS < result.input_tokens < 2 * IMAGE_TOKENS + 200
    # gpt-4o-mini bills images at ~33x the tokens of gpt-4o.
    mini = estimate("openai.chat", {**body, "model": "gpt-4o-mini"}, price("gpt-4o-mini"))
    assert mini.input_tokens > 2 * IMAGE_TOKENS_GPT_4O_MINI


def test_a_file_by_id_is_bounded_by_the_context_window() -> None:
    content = [{"type": "file", "file": {"file_id": "file-abc"}}, {"type": "text", "text": "sum"}]
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": content}]}
    assert estimate("openai.chat", body, price("gpt-4.1")).input_tokens == 1_047_576


# --- OpenAI completions, embeddings, responses --------------------------------------------------


def test_completions_prompt_string() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": TEXT, "max_tokens": 20}
    result = estimate("openai.completions", body, price("gpt-3.5-turbo-instruct"))
    assert result.input_tokens >= len(TEXT.encode())
    assert result.output_tokens == 20
    assert result.body_patch == {}


def test_completions_batch_of_prompts_multiplies_output() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ["a", "b", "c"], "max_tokens": 10, "n": 2}
    result = estimate("openai.completions", body, price("gpt-3.5-turbo-instruct"))
    assert result.output_tokens == 60


def test_completions_best_of_bills_every_candidate() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "a", "max_tokens": 10, "best_of": 5}
    assert estimate("openai.completions", body, price("gpt-3.5-turbo-instruct")).output_tokens == 50


def test_completions_token_ids_count_one_each() -> None:
    ids = [100_000] * 50
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": ids, "max_tokens": 1}
    result = estimate("openai.completions", body, price("gpt-3.5-turbo-instruct"))
    assert 50 <= result.input_tokens <= 50 + PER_REQUEST_TOKENS
    assert result.output_tokens == 1  # one prompt, not fifty


def test_completions_without_max_is_bounded_by_the_provider_default_of_16() -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "stream": True}
    result = estimate("openai.completions", body, price("gpt-3.5-turbo-instruct"))
    assert result.output_tokens == 16
    assert result.body_patch == {"stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("value", "at_least"),
    [(TEXT, len(TEXT.encode())), ([TEXT, "two"], len(TEXT.encode()) + 3), ([[1, 2, 3], [4]], 4)],
)
def test_embeddings(value: object, at_least: int) -> None:
    body = {"model": "text-embedding-3-small", "input": value, "dimensions": 256}
    result = estimate("openai.embeddings", body, price("text-embedding-3-small"))
    assert at_least <= result.input_tokens <= at_least + PER_REQUEST_TOKENS
    assert result.output_tokens == 0
    assert result.body_patch == {}
    assert result.cost_micros == cost_of(result.input_tokens, 0, 0, price("text-embedding-3-small"))


def test_responses_string_input_without_a_max() -> None:
    body = {"model": "gpt-5-mini", "input": TEXT, "instructions": "Be brief."}
    result = estimate("openai.responses", body, price("gpt-5-mini"))
    assert result.input_tokens >= len(TEXT.encode()) + len(b"Be brief.")
    assert result.output_tokens == 128_000
    assert result.body_patch == {}
    assert result.max_field == "max_output_tokens"


def test_responses_items_and_max_output_tokens() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": TEXT}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
    ]
    body = {"model": "gpt-4.1", "input": items, "max_output_tokens": 50, "stream": True}
    result = estimate("openai.responses", body, price("gpt-4.1"))
    assert result.input_tokens >= len(TEXT.encode()) + 3 * PER_MESSAGE_TOKENS
    assert result.output_tokens == 50
    assert result.body_patch == {}  # responses streams always end with usage


@pytest.mark.parametrize(
    "extra",
    [
        {"previous_response_id": "resp_1"},
        {"conversation": "conv_1"},
        {"input": [{"type": "item_reference", "id": "msg_1"}]},
        {"input": [{"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAA"}]},
    ],
)
def test_responses_with_unseen_input_are_bounded_by_the_context_window(
    extra: dict[str, Any],
) -> None:
    body = {"model": "o3", "input": "continue", "max_output_tokens": 10, **extra}
    assert estimate("openai.responses", body, price("o3")).input_tokens == 200_000


# --- Anthropic ----------------------------------------------------------------------------------


def test_anthropic_messages_bound_and_cost() -> None:
    body = anthropic(
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
    )
    result = estimate("anthropic.messages", body, price("claude-sonnet-4-5"))
    assert result.input_tokens >= len(TEXT.encode()) + len(b"Be terse.")
    assert result.output_tokens == 1000
    assert result.body_patch == {}
    # marked for the cache: every input token may be written, at 1.25 x the input price
    assert result.cost_micros == cost_of(0, 0, 1000, price("claude-sonnet-4-5"),
                                         written=result.input_tokens)
    assert result.cost_micros > cost_of(result.input_tokens, 0, 1000, price("claude-sonnet-4-5"))


def test_anthropic_without_cache_marks_reserves_at_the_input_price() -> None:
    result = estimate("anthropic.messages", anthropic(), price("claude-sonnet-4-5"))
    assert result.cost_micros == cost_of(result.input_tokens, 0, 1000, price("claude-sonnet-4-5"))


def test_an_hour_long_cache_mark_anywhere_reserves_at_the_hour_price() -> None:
    block = {"type": "text", "text": TEXT,
             "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = anthropic(messages=[{"role": "user", "content": [block]}])
    result = estimate("anthropic.messages", body, price("claude-sonnet-4-5"))
    assert result.cost_micros == cost_of(0, 0, 1000, price("claude-sonnet-4-5"),
                                         written_1h=result.input_tokens)


def test_cache_writes_never_reserve_below_the_input_price() -> None:
    cheap = PriceTable.load({"claude-sonnet-4-5": {"cache_write": 1}}).resolve("claude-sonnet-4-5")
    body = anthropic(system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}])
    result = estimate("anthropic.messages", body, cheap)
    assert result.cost_micros == cost_of(result.input_tokens, 0, 1000, cheap)


def test_anthropic_missing_max_tokens_is_bounded_by_the_model_max_and_left_out() -> None:
    body = anthropic()
    del body["max_tokens"]
    result = estimate("anthropic.messages", body, price("claude-3-5-haiku-20241022"))
    assert result.output_tokens == 8192
    assert result.body_patch == {}  # the provider refuses it, as it would without Outlay


def test_anthropic_stream_needs_no_patch() -> None:
    result = estimate("anthropic.messages", anthropic(stream=True), price("claude-sonnet-4-5"))
    assert result.body_patch == {}


def test_anthropic_tools_add_the_hidden_tool_prompt() -> None:
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    plain = estimate("anthropic.messages", anthropic(), price("claude-sonnet-4-5"))
    with_tool = estimate("anthropic.messages", anthropic(tools=[tool]), price("claude-sonnet-4-5"))
    assert (
        with_tool.input_tokens
        >= plain.input_tokens + len(json.dumps(tool)) + ANTHROPIC_TOOLS_TOKENS - 20
    )
    builtin = anthropic(tools=[{"type": "bash_20250124", "name": "bash"}])
    result = estimate("anthropic.messages", builtin, price("claude-sonnet-4-5"))
    assert (
        result.input_tokens
        >= plain.input_tokens + ANTHROPIC_TOOLS_TOKENS + ANTHROPIC_BUILTIN_TOOL_TOKENS
    )


def test_anthropic_server_tools_read_the_context_window_once_per_iteration() -> None:
    body = anthropic(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}])
    # the first iteration, then one per search
    assert estimate("anthropic.messages", body, price("claude-3-7-sonnet")).input_tokens == \
        4 * 200_000


def test_anthropic_images_and_documents() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 50_000},
    }
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": TEXT},
    }
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0"},
    }
    model = price("claude-haiku-4-5")

    def bound(*blocks: dict[str, Any]) -> int:
        body = anthropic(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": list(blocks)}]
        )
        return estimate("anthropic.messages", body, model).input_tokens

    assert IMAGE_TOKENS <= bound(image) < IMAGE_TOKENS + 100
    assert len(TEXT.encode()) <= bound(text_doc) < len(TEXT.encode()) + 100
    assert bound(pdf) == model.context_window


def test_tool_results_with_images_inside_are_counted() -> None:
    result_block = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
    }
    body = anthropic(messages=[{"role": "user", "content": [result_block]}])
    assert (
        estimate("anthropic.messages", body, price("claude-sonnet-4")).input_tokens >= IMAGE_TOKENS
    )


def test_count_tokens_is_free_and_produces_nothing() -> None:
    body = {"model": "claude-opus-4-1", "messages": [{"role": "user", "content": TEXT}]}
    for model in (price("claude-opus-4-1"), None):
        result = estimate("anthropic.count_tokens", body, model)
        assert result.cost_micros == 0
        assert result.output_tokens == 0
        assert result.body_patch == {}
        assert result.input_tokens >= len(TEXT.encode())


def test_lone_surrogates_do_not_crash_the_bound() -> None:
    body = chat(messages=[{"role": "user", "content": "\ud800 broken"}])
    assert estimate("openai.chat", body, price("gpt-4o")).input_tokens >= 10


def test_unknown_route_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown route"):
        estimate("openai.images", chat(), None)


# --- validation -------------------------------------------------------------------------------

BAD_BODIES = [
    ("openai.chat", {"messages": [{"role": "user", "content": "x"}]}, "model"),
    ("openai.chat", chat(model=7), "model"),
    ("openai.chat", chat(model=""), "model"),
    ("openai.chat", {"model": "gpt-4o"}, "messages"),
    ("openai.chat", chat(messages=[]), "messages"),
    ("openai.chat", chat(messages="hello"), "messages"),
    ("openai.chat", chat(messages=[{"role": "user", "content": "x"}, "hi"]), "messages[1]"),
    ("openai.chat", chat(max_tokens=-1), "max_tokens"),
    ("openai.chat", chat(max_tokens=1.5), "max_tokens"),
    ("openai.chat", chat(max_tokens="10"), "max_tokens"),
    ("openai.chat", chat(max_tokens=True), "max_tokens"),
    ("openai.chat", chat(max_completion_tokens=-3), "max_completion_tokens"),
    ("openai.chat", chat(n=0), "n"),
    ("openai.chat", chat(stream=True, stream_options="usage"), "stream_options"),
    ("openai.completions", {"model": "gpt-3.5-turbo-instruct"}, "prompt"),
    ("openai.completions", {"model": "gpt-3.5-turbo-instruct", "prompt": 5}, "prompt"),
    ("openai.completions", {"model": "x", "prompt": "a", "best_of": 0}, "best_of"),
    ("openai.embeddings", {"model": "text-embedding-3-small"}, "input"),
    ("openai.embeddings", {"model": "text-embedding-3-small", "input": []}, "input"),
    ("openai.responses", {"model": "gpt-5"}, "input"),
    ("openai.responses", {"model": "gpt-5", "input": "x", "max_output_tokens": -1},
     "max_output_tokens"),
    ("anthropic.messages", {"model": "claude-sonnet-4-5", "max_tokens": 10}, "messages"),
    ("anthropic.messages", anthropic(max_tokens=-10), "max_tokens"),
    ("anthropic.messages", anthropic(messages=[None]), "messages[0]"),
    ("anthropic.count_tokens", {"model": "claude-sonnet-4-5"}, "messages"),
    ("anthropic.count_tokens", {"messages": [{"role": "user", "content": "x"}]}, "model"),
]  # fmt: skip


@pytest.mark.parametrize(("route", "body", "param"), BAD_BODIES)
def test_unusable_bodies_are_invalid_requests(route: str, body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        estimate(route, body, TABLE.resolve(str(body.get("model"))))
    assert caught.value.code == "invalid_request"
    assert caught.value.status == 400
    assert caught.value.details["param"] == param
    assert param in caught.value.message


def test_a_body_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        estimate("openai.chat", ["not", "an", "object"], None)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["prompt", "previous_response_id", "conversation"])
def test_responses_may_omit_input_when_state_is_stored(key: str) -> None:
    body = {"model": "gpt-5", key: {"id": "pmpt_1"} if key == "prompt" else "id_1"}
    result = estimate("openai.responses", body, price("gpt-5"))
    assert result.input_tokens == price("gpt-5").context_window


# --- clamping: the cost as a function of the maximum output Outlay sets -------------------------

MARK = {"type": "ephemeral"}


def _without_max(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "max_tokens"}


@pytest.mark.parametrize(("route", "body", "model"), [
    ("openai.chat", chat(), "gpt-4o-mini"),
    ("openai.chat", chat(n=3), "gpt-4o"),
    ("openai.chat", chat(prediction={"type": "content", "content": "x" * 500}), "gpt-4o"),
    ("openai.chat", chat(model="o3-mini"), "o3-mini"),
    ("openai.completions", {"model": "gpt-3.5-turbo-instruct", "prompt": ["a", "b"], "n": 2,
                            "best_of": 3}, "gpt-3.5-turbo-instruct"),
    ("openai.responses", {"model": "gpt-4o", "input": TEXT}, "gpt-4o"),
    ("anthropic.messages", _without_max(anthropic()), "claude-sonnet-4-5"),
    ("anthropic.messages", _without_max(anthropic(
        system=[{"type": "text", "text": TEXT, "cache_control": MARK}])), "claude-sonnet-4-5"),
    ("anthropic.messages", _without_max(anthropic(
        system=[{"type": "text", "text": TEXT, "cache_control": {**MARK, "ttl": "1h"}}])),
     "claude-sonnet-4-5"),
])
def test_the_clamp_prices_every_lower_maximum_as_the_estimate_would(
        route: str, body: dict[str, Any], model: str) -> None:
    p = price(model)
    full = estimate(route, body, p)
    assert full.clamp is not None
    assert full.max_field is not None
    # the request is left as it came; the bound is the provider's own default
    assert full.max_field not in full.body_patch
    assert full.clamp.limit == (16 if route == "openai.completions" else p.max_output_tokens)
    assert full.clamp.floor is None  # lowered only where a policy allows it
    assert full.clamp.cost(full.clamp.limit) == full.cost_micros
    for n in (1, 17, p.max_output_tokens // 3):
        asked = estimate(route, {**body, full.max_field: n}, p)
        # the request names its maximum: lowered from it, priced as the model's would be
        assert asked.clamp is not None
        assert asked.clamp.named
        assert asked.clamp.limit == n
        assert asked.max_field == full.max_field
        assert asked.clamp.cost(n) == asked.cost_micros
        assert asked.clamp.cost(n // 2) == full.clamp.cost(n // 2)
        assert full.clamp.cost(n) == asked.cost_micros, n
        assert full.output_tokens - (full.clamp.limit - n) * full.clamp.choices == \
            asked.output_tokens


@pytest.mark.parametrize(("route", "body", "model"), [
    ("openai.embeddings", {"model": "text-embedding-3-small", "input": "x"},
     "text-embedding-3-small"),  # no output to lower
    ("anthropic.count_tokens", _without_max(anthropic()), "claude-sonnet-4-5"),
])
def test_calls_with_nothing_to_lower_have_no_clamp(
        route: str, body: dict[str, Any], model: str) -> None:
    assert estimate(route, body, price(model)).clamp is None


def test_unpriced_and_free_models_have_no_clamp() -> None:
    assert estimate("openai.chat", chat(model="nobody-knows"), None).clamp is None
    free = ModelPrice("free-one", "openai", 0, 0, 0, 100, 1000, free=True)
    assert estimate("openai.chat", chat(model="free-one"), free).clamp is None


@pytest.mark.parametrize(("route", "body", "field", "limit"), [
    ("openai.chat", chat(max_tokens=10), "max_tokens", 10),
    ("openai.chat", chat(max_completion_tokens=10), "max_completion_tokens", 10),
    ("openai.chat", chat(max_tokens=10, max_completion_tokens=20), "max_tokens", 20),
    ("anthropic.messages", anthropic(max_tokens=1_024), "max_tokens", 1_024),
])
def test_a_named_maximum_is_lowered_in_every_field_the_request_named(
        route: str, body: dict[str, Any], field: str, limit: int) -> None:
    est = estimate(route, body, price(body["model"]))
    assert est.clamp is not None
    assert est.clamp.named
    assert (est.max_field, est.clamp.limit) == (field, limit)
    named = {name for name in ("max_tokens", "max_completion_tokens") if name in body}
    assert clamp_patch(route, body, est, 7) == dict.fromkeys(named, 7)
