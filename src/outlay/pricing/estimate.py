"""What an LLM call may cost before it is sent (the reservation) and what it did cost after.

Pure functions over a parsed JSON body, a provider's `usage` object and a ModelPrice (SPEC §3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from outlay.policy.decision import Clamp
from outlay.policy.errors import invalid_request
from outlay.policy.money import ceil_div
from outlay.pricing.table import ModelPrice
from outlay.pricing.tokens import input_bound, text_bytes
from outlay.values import value

ROUTES = (
    "openai.chat",
    "openai.completions",
    "openai.embeddings",
    "openai.responses",
    "anthropic.messages",
    "anthropic.count_tokens",
)
# Output assumed for a model with no known price when the request names no maximum. Such a
# call has no cost bound anyway (cost_micros is None); this only feeds token rate limits.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
_TOKENS_PER_MTOK = 1_000_000

# The fields that cap output, per route; the first is the one Outlay sets when none is given.
_MAX_FIELDS: Mapping[str, tuple[str, ...]] = {
    "openai.chat": ("max_tokens", "max_completion_tokens"),
    "openai.completions": ("max_tokens",),
    "openai.responses": ("max_output_tokens",),
    "anthropic.messages": ("max_tokens",),
}
# Reasoning models refuse `max_tokens` on chat completions and take `max_completion_tokens`.
_REASONING_MODEL = re.compile(r"^(?:o\d|gpt-5)")


@value
class Estimate:
    input_tokens: int  # never less than the provider will count
    output_tokens: int  # the most the call may produce
    cost_micros: int | None  # upper bound; None when the price is unknown
    body_patch: dict[str, Any] = field(default_factory=dict)  # set these in the forwarded body
    # when Outlay sets the maximum output (the request names none): its field, and how the
    # cost falls with it
    max_field: str | None = None
    clamp: Clamp | None = None


def estimate(route: str, body: dict[str, Any], price: ModelPrice | None) -> Estimate:
    """The reservation for one call: bounds on its tokens and cost, and the body fields to set.

    Raises BadRequest (invalid_request) for a body that cannot be forwarded as it is.
    """
    _check_route(route)
    _validate(route, body)
    try:
        input_tokens = input_bound(route, body, price)
    except RecursionError:
        # JSON the parser accepted can still nest deeper than the stack left for walking it.
        raise invalid_request("The request body is nested too deeply.") from None
    output_tokens, patch = _output(route, body, price)
    max_field = next((name for name in _MAX_FIELDS.get(route, ()) if name in patch),
                     None) if patch else None
    if route == "anthropic.count_tokens":
        return Estimate(input_tokens, output_tokens, 0, patch)  # counting tokens is free
    if price is None:
        return Estimate(input_tokens, output_tokens, None, patch, max_field)
    input_price = _dearest_input(route, body, price)
    cost = 0 if price.free else ceil_div(
        input_tokens * input_price + output_tokens * price.output_micros_per_mtok,
        _TOKENS_PER_MTOK)
    clamp = None
    if max_field is not None and cost:
        clamp = _clamp(route, body, price, input_tokens * input_price, patch[max_field],
                       output_tokens)
    return Estimate(input_tokens, output_tokens, cost, patch, max_field, clamp)


def _dearest_input(route: str, body: Mapping[str, Any], price: ModelPrice) -> int:
    """The most an input token may cost: an Anthropic request that marks blocks for the
    prompt cache may have every input token written to it, at the price of its lifetime."""
    ttl = _cache_write_ttl(body) if route == "anthropic.messages" else None
    if ttl is None:
        return price.input_micros_per_mtok
    written = price.cache_write_1h if ttl == "1h" else price.cache_write
    return max(price.input_micros_per_mtok, price.cache_write, written)


def _clamp(route: str, body: Mapping[str, Any], price: ModelPrice, input_cost: int,
           limit: int, output_tokens: int) -> Clamp:
    """The call's cost as a function of the maximum output Outlay sets: at `limit`, exactly
    the estimate's. `input_cost` is micro-USD per million tokens of the input bound."""
    choices = _choices(route, body)
    # the output bound beyond the maximum itself (predicted output) is billed whatever it is
    extra = output_tokens - limit * choices
    return Clamp(input_cost + extra * price.output_micros_per_mtok,
                 choices * price.output_micros_per_mtok, limit, choices)


def _cache_write_ttl(body: Mapping[str, Any]) -> str | None:
    """None when an Anthropic request marks nothing for the prompt cache; "1h" when some
    mark asks for an hour; "5m" otherwise (the default lifetime)."""
    ttl = None
    pending: list[object] = [body]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            mark = item.get("cache_control")
            if isinstance(mark, dict):
                if mark.get("ttl") == "1h":
                    return "1h"
                ttl = "5m"
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return ttl


def cost_of(
    input_tokens: int, cached_input_tokens: int, output_tokens: int, price: ModelPrice, *,
    written: int = 0, written_1h: int = 0,
) -> int:
    """Micro-USD for uncached input, cached input, output tokens and input tokens written to
    the prompt cache (for 5 minutes, for an hour), rounded up once at the end."""
    for name, count in (
        ("input_tokens", input_tokens),
        ("cached_input_tokens", cached_input_tokens),
        ("output_tokens", output_tokens),
        ("written", written),
        ("written_1h", written_1h),
    ):
        if count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")
    if price.free:
        return 0
    micro_usd_per_mtok = (
        input_tokens * price.input_micros_per_mtok
        + cached_input_tokens * price.cached_input_micros_per_mtok
        + output_tokens * price.output_micros_per_mtok
        + written * price.cache_write
        + written_1h * price.cache_write_1h
    )
    return ceil_div(micro_usd_per_mtok, _TOKENS_PER_MTOK)


def usage_cost(
    route: str, usage: Mapping[str, Any], price: ModelPrice | None
) -> tuple[int, int | None]:
    """(total tokens, micro-USD or None when the price is unknown) from a provider's `usage`.

    Anthropic streams report usage in pieces: pass the merged dict. Missing or malformed
    counts read as 0, and cached tokens never exceed the input they are part of.
    """
    _check_route(route)
    if route == "anthropic.count_tokens":
        return 0, 0
    if route == "anthropic.messages":
        # Anthropic reports the kinds of input apart: cache writes have prices of their own,
        # by lifetime when `cache_creation` says (5 minutes when it does not)
        fresh = _count(usage, "input_tokens")
        cached = _count(usage, "cache_read_input_tokens")
        output = _count(usage, "output_tokens")
        by_ttl = usage.get("cache_creation")
        one_hour = _count(by_ttl, "ephemeral_1h_input_tokens")
        written = max(_count(usage, "cache_creation_input_tokens"),
                      one_hour + _count(by_ttl, "ephemeral_5m_input_tokens")) - one_hour
        total = fresh + cached + written + one_hour + output
        cost = None if price is None else cost_of(fresh, cached, output, price,
                                                  written=written, written_1h=one_hour)
        return total, cost
    # OpenAI reports cached tokens as part of the input.
    if route == "openai.responses":
        keys = ("input_tokens", "input_tokens_details", "output_tokens")
    else:
        keys = ("prompt_tokens", "prompt_tokens_details", "completion_tokens")
    input_tokens = _count(usage, keys[0])
    cached = min(_count(usage.get(keys[1]), "cached_tokens"), input_tokens)
    fresh = input_tokens - cached
    output = 0 if route == "openai.embeddings" else _count(usage, keys[2])
    total = input_tokens + output
    return total, (None if price is None else cost_of(fresh, cached, output, price))


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")


def _count(usage: object, key: str) -> int:
    value = usage.get(key) if isinstance(usage, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _validate(route: str, body: object) -> None:
    if not isinstance(body, Mapping):
        raise invalid_request("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("`model` is required and must be a non-empty string.", "model")
    if route in ("openai.chat", "anthropic.messages", "anthropic.count_tokens"):
        _validate_messages(body.get("messages"))
    elif route == "openai.completions":
        _require_text(body, "prompt")
    elif route == "openai.embeddings":
        _require_text(body, "input")
    elif route == "openai.responses" and not any(
        body.get(key) is not None for key in ("prompt", "previous_response_id", "conversation")
    ):
        # A stored prompt or conversation may stand in for `input`; otherwise it is required.
        _require_text(body, "input")
    for name in _MAX_FIELDS.get(route, ()):
        _non_negative_int(body, name)
    if route in ("openai.chat", "openai.completions"):
        _positive_int(body, "n")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, Mapping):
            raise invalid_request("`stream_options` must be an object.", "stream_options")
    if route == "openai.completions":
        _positive_int(body, "best_of")


def _validate_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid_request("`messages` is required and must be a non-empty array.", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise invalid_request(f"`messages[{index}]` must be an object.", f"messages[{index}]")


def _require_text(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise invalid_request(f"`{name}` is required: a string or a non-empty array.", name)


def _non_negative_int(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise invalid_request(f"`{name}` must be a non-negative integer, got {value!r}.", name)


def _positive_int(body: Mapping[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise invalid_request(f"`{name}` must be a positive integer, got {value!r}.", name)


def _output(
    route: str, body: Mapping[str, Any], price: ModelPrice | None
) -> tuple[int, dict[str, Any]]:
    """The most output tokens the call may bill, and the fields that make it so."""
    patch: dict[str, Any] = {}
    if route in ("openai.chat", "openai.completions") and body.get("stream") is True:
        # Without usage on the final chunk a stream could not be settled to its actual cost.
        patch["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    fields = _MAX_FIELDS.get(route)
    if fields is None:
        return 0, patch  # embeddings and token counting produce no output
    requested = [body[name] for name in fields if body.get(name) is not None]
    if requested:
        limit = max(requested)
        if price is not None:
            # Above the model's maximum the provider refuses the call, so it cannot bill more.
            limit = min(limit, price.max_output_tokens)
    elif price is None:
        limit = DEFAULT_MAX_OUTPUT_TOKENS
    else:
        limit = price.max_output_tokens
        patch[_patch_field(route, price)] = limit
    choices = _choices(route, body)
    # Predicted output that the model rejects is billed as output on top of what it writes.
    prediction = body.get("prediction") if route == "openai.chat" else None
    predicted = 0 if prediction is None else text_bytes(prediction)
    return (limit + predicted) * choices, patch


def _patch_field(route: str, price: ModelPrice) -> str:
    if route == "openai.chat" and _REASONING_MODEL.match(price.name):
        return "max_completion_tokens"
    return _MAX_FIELDS[route][0]


def _choices(route: str, body: Mapping[str, Any]) -> int:
    """How many completions the provider bills: `n` (or `best_of`) per prompt."""
    if route not in ("openai.chat", "openai.completions"):
        return 1
    per_prompt: int = body.get("n") or 1
    if route == "openai.chat":
        return per_prompt
    per_prompt = max(per_prompt, body.get("best_of") or 1)
    prompt = body.get("prompt")
    # A completions prompt that is a list of strings or of token-id lists is a batch.
    if isinstance(prompt, list) and all(isinstance(item, str | list) for item in prompt):
        return per_prompt * len(prompt)
    return per_prompt
