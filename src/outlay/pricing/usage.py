"""What an LLM call did cost: the usage a provider reports, priced at the service tier the
answer names, the input-length tier its input reached, and the fees of the server-side tools
it used (SPEC §3.3). Pure functions over the provider's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.policy.money import ceil_div
from outlay.pricing.rates import Rates
from outlay.pricing.table import ModelPrice

ROUTES = (
    "openai.chat",
    "openai.completions",
    "openai.embeddings",
    "openai.responses",
    "anthropic.messages",
    "anthropic.count_tokens",
)
TOKENS_PER_MTOK = 1_000_000
# Anthropic reports the server-side tools it ran in usage.server_tool_use
_ANTHROPIC_TOOL_USES = {"web_search_requests": "web_search", "web_fetch_requests": "web_fetch"}
# OpenAI Responses lists each server-side tool call as an output item
_OPENAI_TOOL_ITEMS = {"web_search_call": "web_search", "file_search_call": "file_search",
                      "mcp_call": "mcp", "image_generation_call": "image_generation"}


def check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")


def cost_of(
    input_tokens: int, cached_input_tokens: int, output_tokens: int, price: ModelPrice, *,
    written: int = 0, written_1h: int = 0, rates: Rates | None = None,
) -> int:
    """Micro-USD for uncached input, cached input, output tokens and input tokens written to
    the prompt cache (for 5 minutes, for an hour), rounded up once at the end; at `rates`
    (a tier's), else at the model's own."""
    if min(input_tokens, cached_input_tokens, output_tokens, written, written_1h) < 0:
        _refuse_negative(input_tokens, cached_input_tokens, output_tokens, written, written_1h)
    if price.free:
        return 0
    r = price.rates if rates is None else rates
    micro_usd_per_mtok = (
        input_tokens * r.input
        + cached_input_tokens * r.cached_input
        + output_tokens * r.output
        + written * r.cache_write
        + written_1h * r.cache_write_1h
    )
    return ceil_div(micro_usd_per_mtok, TOKENS_PER_MTOK)


def _refuse_negative(input_tokens: int, cached_input_tokens: int, output_tokens: int,
                     written: int, written_1h: int) -> None:
    for name, count in (
        ("input_tokens", input_tokens),
        ("cached_input_tokens", cached_input_tokens),
        ("output_tokens", output_tokens),
        ("written", written),
        ("written_1h", written_1h),
    ):
        if count < 0:
            raise ValueError(f"{name} must be >= 0, got {count}")


def usage_cost(
    route: str, usage: Mapping[str, Any], price: ModelPrice | None, *,
    tier: str | None = None, fallback_tier: str | None = None,
    tool_uses: Mapping[str, int] | None = None, fees: Mapping[str, int] | None = None,
) -> tuple[int, int | None]:
    """(total tokens, micro-USD or None when the price is unknown) from a provider's `usage`.

    `tier` is the service tier the answer reports (priced at `fallback_tier`, the one the
    reservation assumed, when the table does not price it); the input reported picks the
    input-length tier. `tool_uses` counts server-side tool uses (Anthropic's are read from
    `usage` itself), each charged its fee in `fees`, else the model's. Anthropic streams
    report usage in pieces: pass the merged dict. Missing or malformed counts read as 0, and
    cached tokens never exceed the input they are part of.
    """
    check_route(route)
    if route == "anthropic.count_tokens":
        return 0, 0
    if route == "anthropic.messages":
        # Anthropic reports the kinds of input apart: cache writes have prices of their own,
        # by lifetime when `cache_creation` says (5 minutes when it does not)
        fresh = count(usage, "input_tokens")
        cached = count(usage, "cache_read_input_tokens")
        output = count(usage, "output_tokens")
        by_ttl = usage.get("cache_creation")
        one_hour = count(by_ttl, "ephemeral_1h_input_tokens")
        written = max(count(usage, "cache_creation_input_tokens"),
                      one_hour + count(by_ttl, "ephemeral_5m_input_tokens")) - one_hour
        read = fresh + cached + written + one_hour
        uses = {**anthropic_tool_uses(usage), **(tool_uses or {})}
        if price is None:
            return read + output, None
        rates = _rates(price, tier or _tier_in(usage), fallback_tier, read)
        cost = cost_of(fresh, cached, output, price, written=written, written_1h=one_hour,
                       rates=rates)
        return read + output, cost + _fees(price, uses, fees)
    # OpenAI reports cached tokens as part of the input.
    if route == "openai.responses":
        keys = ("input_tokens", "input_tokens_details", "output_tokens")
    else:
        keys = ("prompt_tokens", "prompt_tokens_details", "completion_tokens")
    input_tokens = count(usage, keys[0])
    cached = min(count(usage.get(keys[1]), "cached_tokens"), input_tokens)
    output = 0 if route == "openai.embeddings" else count(usage, keys[2])
    if price is None:
        return input_tokens + output, None
    rates = _rates(price, tier, fallback_tier, input_tokens)
    cost = cost_of(input_tokens - cached, cached, output, price, rates=rates)
    return input_tokens + output, cost + _fees(price, tool_uses or {}, fees)


def reported_tier(document: Mapping[str, Any]) -> str | None:
    """The service tier an answer or stream event says the call ran in: OpenAI's top-level
    `service_tier` (of the response, for Responses events), Anthropic's in `usage`."""
    for holder in (document, document.get("response"), document.get("message")):
        if holder is None or (type(holder) is not dict and not isinstance(holder, Mapping)):
            continue
        tier = holder.get("service_tier")
        if isinstance(tier, str):
            return tier
        usage = holder.get("usage")
        if (type(usage) is dict or isinstance(usage, Mapping)) \
                and isinstance(usage.get("service_tier"), str):
            return str(usage["service_tier"])
    return None


def openai_tool_uses(response: Mapping[str, Any]) -> dict[str, int]:
    """Server-side tool uses an OpenAI Responses object reports in its output items: one per
    call, and one code interpreter container per container its calls ran in."""
    uses: dict[str, int] = {}
    containers: set[str] = set()
    output = response.get("output")
    for item in output if isinstance(output, list) else ():
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind == "code_interpreter_call":
            containers.add(str(item.get("container_id")))
        elif isinstance(kind, str) and kind in _OPENAI_TOOL_ITEMS:
            name = _OPENAI_TOOL_ITEMS[kind]
            uses[name] = uses.get(name, 0) + 1
    if containers:
        uses["code_interpreter"] = len(containers)
    return uses


def anthropic_tool_uses(usage: Mapping[str, Any]) -> dict[str, int]:
    reported = usage.get("server_tool_use")
    return {name: count(reported, key) for key, name in _ANTHROPIC_TOOL_USES.items()
            if count(reported, key)}


def count(usage: object, key: str) -> int:
    # the exact types first: they are what JSON holds, and the ABC test (Mapping) costs more
    # than the rest of the function
    value = usage.get(key) if type(usage) is dict or isinstance(usage, Mapping) else None
    if type(value) is int:
        return value if value >= 0 else 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _tier_in(usage: Mapping[str, Any]) -> str | None:
    tier = usage.get("service_tier")
    return tier if isinstance(tier, str) else None


def _rates(price: ModelPrice, tier: str | None, fallback: str | None, input_tokens: int
           ) -> Rates:
    """The rates of the tier reported, else of the tier reserved for, else the model's own,
    at the input-length tier the input reached."""
    prices = price.tier(tier) or price.tier(fallback) or price.tier(None)
    assert prices is not None  # the base tier is always priced
    return prices.at(input_tokens)


def _fees(price: ModelPrice, uses: Mapping[str, int], fees: Mapping[str, int] | None) -> int:
    if price.free:
        return 0
    total = 0
    for name, n in uses.items():
        fee = (fees or {}).get(name)
        if fee is None:
            fee = price.fee(name) or 0
        total += n * fee
    return total
