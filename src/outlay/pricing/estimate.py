"""What an LLM call may cost before it is sent: the reservation, an upper bound over every
outcome the request allows (its service tier, its input-length tier, the uses of its
server-side tools), and the body fields that make the bound hold (SPEC §3.2).

Pure functions over a parsed JSON body and a ModelPrice.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from outlay.policy.decision import Clamp
from outlay.policy.errors import invalid_request
from outlay.policy.money import ceil_div
from outlay.pricing.rates import Rates
from outlay.pricing.table import ModelPrice
from outlay.pricing.tokens import input_bound, text_bytes
from outlay.pricing.tools import DEFAULT_MAX_USES, ServerTools, server_tools, with_uses
from outlay.pricing.usage import ROUTES, TOKENS_PER_MTOK, check_route, cost_of, usage_cost
from outlay.values import value

__all__ = ["ROUTES", "Estimate", "beta_names", "clamp_patch", "cost_of", "estimate",
           "usage_cost"]

# Output assumed for a model with no known price when the request names no maximum. Such a
# call has no cost bound anyway (cost_micros is None); this only feeds token rate limits.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
# The legacy completions endpoint writes at most 16 tokens when the request names no maximum
COMPLETIONS_DEFAULT_MAX_TOKENS = 16

# The fields that cap output, per route; the first is the one Outlay sets when it clamps.
_MAX_FIELDS: Mapping[str, tuple[str, ...]] = {
    "openai.chat": ("max_tokens", "max_completion_tokens"),
    "openai.completions": ("max_tokens",),
    "openai.responses": ("max_output_tokens",),
    "anthropic.messages": ("max_tokens",),
}
_REASONING = re.compile(r"^(?:o\d|gpt-5)")
_BETA_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}$")
# The fields Outlay sets to bound the uses of server-side tools
USES_FIELDS = ("max_uses", "max_tool_calls")


@value
class Estimate:
    input_tokens: int  # never less than the provider will count (every iteration)
    output_tokens: int  # the most the call may produce
    cost_micros: int | None  # upper bound; None when the price is unknown
    body_patch: dict[str, Any] = field(default_factory=dict)  # set these in the forwarded body
    # when Outlay may lower a bound to fit a budget: the field it sets (a maximum output, or
    # `max_uses` / `max_tool_calls`), and how the cost falls with it
    max_field: str | None = None
    clamp: Clamp | None = None
    tier: str | None = None  # the service tier the bound assumes (None: the model's own)
    fees: tuple[tuple[str, int], ...] = ()  # micro-USD per use, by the usage it is reported as
    unpriced: str | None = None  # what has no price, when cost_micros is None
    tools: ServerTools = field(default_factory=ServerTools)
    output_price: int = 0  # micro-USD per million output tokens, at the bound's prices
    hidden_output: bool = False  # the model may bill reasoning it never shows

    def up_to(self, shown: int) -> int | None:
        """What the call can have cost if it ended having shown `shown` output tokens: the
        bound with its output cut to them (all of it when reasoning may be hidden), for a
        call whose answer reports no usage."""
        if self.cost_micros is None or self.hidden_output:
            return self.cost_micros
        unshown = max(0, self.output_tokens - shown)
        return max(0, self.cost_micros - unshown * self.output_price // TOKENS_PER_MTOK)


def estimate(route: str, body: dict[str, Any], price: ModelPrice | None, *,
             tier_default: str | None = None, betas: tuple[str, ...] = ()) -> Estimate:
    """The reservation for one call: bounds on its tokens and cost, and the body fields to set.

    `tier_default` is the service tier a request for `auto` (or none) lands in, as configured
    for the provider (None: its base tier); `betas` the beta names the request's headers
    enable (`beta_names`). Raises BadRequest (invalid_request) for a body that cannot be
    forwarded as it is.
    """
    check_route(route)
    _validate(route, body)
    if price is not None and route.startswith("anthropic.") and betas:
        price = price.lifted(betas)
    tools = server_tools(route, body)
    try:
        input_tokens = input_bound(route, body, price)
    except RecursionError:
        # JSON the parser accepted can still nest deeper than the stack left for walking it.
        raise invalid_request("The request body is nested too deeply.") from None
    output_tokens, patch, asked = _output(route, body, price)
    if route == "anthropic.count_tokens":
        return Estimate(input_tokens, output_tokens, 0, patch)  # counting tokens is free
    if price is None:
        return Estimate(input_tokens, output_tokens, None, patch,
                        unpriced=f"model '{body.get('model')}'")
    tier = _requested_tier(route, body, tier_default)
    prices = price.tier(tier)
    if prices is None:
        return Estimate(input_tokens, output_tokens, None, patch, tier=tier,
                        unpriced=f"the {tier!r} service tier of model '{price.name}'")
    uses = _Uses.of(tools, price)
    if uses.unpriced is not None:
        return Estimate(input_tokens, output_tokens, None, patch, tier=tier,
                        unpriced=f"the {uses.unpriced!r} tool on model '{price.name}'")
    limit = uses.limit()
    # every use may start an iteration that reads the whole context again
    input_tokens += limit.iterations * price.context_window
    rates = prices.at(input_tokens)
    input_price = _dearest_input(route, body, rates)
    numerator = (input_tokens * input_price + output_tokens * rates.output
                 + limit.fees * TOKENS_PER_MTOK)
    clamp: Clamp | None = None
    max_field: str | None = None
    if price.free or not numerator:
        pass
    elif tools.unbounded:
        # uses the request leaves open are bounded by Outlay: at most `limit.n` unless the
        # budget asks for fewer (never fewer than one: then the call is refused)
        per_use = (limit.unbounded * price.context_window * input_price
                   + limit.unbounded_fees * TOKENS_PER_MTOK)
        clamp = Clamp(numerator - limit.n * per_use, per_use, limit.n,
                      limit.unbounded * price.context_window, floor=1)
        max_field = _uses_field(route)
        patch = {**patch, **with_uses(route, body, tools, limit.n)}
    else:
        max_field = _clamp_field(route, asked)
        if max_field is not None:
            clamp = _output_clamp(route, price, numerator, rates.output, asked)
    # made once, with every field known: the request path makes one per call
    return Estimate(input_tokens, output_tokens, 0 if price.free else ceil_div(
        numerator, TOKENS_PER_MTOK), patch, max_field, clamp, tier, uses.fees, None, tools,
        0 if price.free else rates.output, _hides_reasoning(route, body, price))


def _output_clamp(route: str, price: ModelPrice, numerator: int, output_price: int,
                  asked: _Asked) -> Clamp:
    """How the bound falls with the maximum output Outlay may set."""
    choices = asked.choices
    # the maximum output the request names itself (the largest, when it names two), cut to
    # the model's own
    named = None if asked.limit is None else int(min(asked.limit, price.max_output_tokens))
    own = _own_limit(route, price) if named is None else named
    # the output bound beyond the maximum itself (predicted output) is billed whatever it is
    return Clamp(numerator - own * choices * output_price, choices * output_price, own,
                 choices, named=named is not None)


def _hides_reasoning(route: str, body: Mapping[str, Any], price: ModelPrice) -> bool:
    """Whether the model may bill output it never shows: OpenAI's reasoning models (o1, o3,
    gpt-5 but its chat variant) and Anthropic's extended thinking (shown summarised)."""
    if route.startswith("anthropic."):
        thinking = body.get("thinking")
        return isinstance(thinking, Mapping) and thinking.get("type") != "disabled"
    if body.get("reasoning") is not None or body.get("reasoning_effort") is not None:
        return True
    return _reasoning_model(price.name)


@functools.lru_cache(maxsize=1024)  # by name: the price table's names, a bounded set
def _reasoning_model(name: str) -> bool:
    return bool(_REASONING.match(name)) and "-chat" not in name


def clamp_patch(route: str, body: Mapping[str, Any], est: Estimate, n: int) -> dict[str, Any]:
    """The body fields that lower the call's bound to `n` (Reservation.clamped_to)."""
    if est.max_field in USES_FIELDS:
        return with_uses(route, body, est.tools, n)
    assert est.max_field is not None
    named = {name: n for name in _MAX_FIELDS.get(route, ()) if body.get(name) is not None}
    return named or {est.max_field: n}


def beta_names(header: str | None) -> tuple[str, ...]:
    """The betas an `anthropic-beta` header enables, without their dates
    (`output-128k-2025-02-19` is `output-128k`)."""
    if not header:
        return ()
    return tuple(_BETA_DATE.sub("", name.strip()) for name in header.split(",") if name.strip())


def _requested_tier(route: str, body: Mapping[str, Any], default: str | None) -> str | None:
    """The tier the call may land in: the one asked for; for `auto` (or none) the one the
    provider's account is set to use (`service_tier_default`; None: the base tier)."""
    asked = body.get("service_tier")
    if route.startswith("anthropic."):
        # Anthropic takes `auto` (priority capacity when the account has it) or `standard_only`
        return "standard" if asked == "standard_only" else default
    return default if asked in (None, "auto") else asked


class _Uses:
    """The most the server-side tools of a call can cost: its uses and their fees."""

    def __init__(self, tools: ServerTools, fees: dict[str, int], unpriced: str | None) -> None:
        self.tools, self.fee_of, self.unpriced = tools, fees, unpriced

    @classmethod
    def of(cls, tools: ServerTools, price: ModelPrice) -> _Uses:
        if not tools.tools:
            return _NO_USES
        fees: dict[str, int] = {}
        for tool in tools.tools:
            fee = price.fee(tool.fee_name)
            if fee is None:
                return cls(tools, {}, tool.fee_name)
            fees[tool.fee_name] = fee
        return cls(tools, fees, None)

    @property
    def fees(self) -> tuple[tuple[str, int], ...]:
        """Micro-USD per use by the usage it is reported as (the dearest variant offered)."""
        if not self.tools.tools:
            return ()
        by_kind: dict[str, int] = {}
        for tool in self.tools.tools:
            fee = self.fee_of[tool.fee_name]
            by_kind[tool.kind] = max(fee, by_kind.get(tool.kind, 0))
        return tuple(sorted(by_kind.items()))

    def limit(self) -> _Limit:
        tools = self.tools
        if not tools.tools:
            return _NO_LIMIT
        if tools.shared:
            return self._shared()
        # Anthropic: each tool's own max_uses, or Outlay's on those that have none
        n = DEFAULT_MAX_USES
        fixed = sum(t.max_uses or 0 for t in tools.tools)
        fixed_fees = sum((t.max_uses or 0) * self.fee_of[t.fee_name] for t in tools.tools)
        open_ = tools.unbounded
        open_fees = sum(self.fee_of[t.fee_name] for t in open_)
        return _Limit(fixed + n * len(open_), fixed_fees + n * open_fees, n, len(open_),
                      open_fees)

    def _shared(self) -> _Limit:
        """OpenAI: one bound over every call; each at the dearest per-call fee, and each
        code interpreter tool one container."""
        tools = self.tools
        per_call = max((self.fee_of[t.fee_name] for t in tools.tools
                        if t.fee_name not in tools.per_container), default=0)
        containers = sum(self.fee_of[name] for name in tools.per_container)
        n = DEFAULT_MAX_USES if tools.max_tool_calls is None else tools.max_tool_calls
        unbounded = 1 if tools.max_tool_calls is None else 0
        return _Limit(n, n * per_call + containers, n, unbounded, per_call * unbounded)


@value
class _Limit:
    iterations: int  # server-side iterations beyond the first
    fees: int  # micro-USD of tool fees at the bound
    n: int  # the uses Outlay sets on each unbounded tool (or in all)
    unbounded: int  # how many bounds Outlay sets (tools, or 1 for max_tool_calls)
    unbounded_fees: int  # micro-USD of fees per unit of `n`


_NO_USES = _Uses(ServerTools(), {}, None)  # a call without server-side tools
_NO_LIMIT = _Limit(0, 0, 0, 0, 0)


def _uses_field(route: str) -> str:
    return "max_tool_calls" if route == "openai.responses" else "max_uses"


def _dearest_input(route: str, body: Mapping[str, Any], rates: Rates) -> int:
    """The most an input token may cost: an Anthropic request that marks blocks for the
    prompt cache may have every input token written to it, at the price of its lifetime."""
    ttl = _cache_write_ttl(body) if route == "anthropic.messages" else None
    if ttl is None:
        return rates.input
    written = rates.cache_write_1h if ttl == "1h" else rates.cache_write
    return max(rates.input, rates.cache_write, written)


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


def _validate(route: str, body: object) -> None:
    if type(body) is not dict and not isinstance(body, Mapping):
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
        if options is not None and type(options) is not dict \
                and not isinstance(options, Mapping):
            raise invalid_request("`stream_options` must be an object.", "stream_options")
    if route == "openai.completions":
        _positive_int(body, "best_of")
    tier = body.get("service_tier")
    if tier is not None and not isinstance(tier, str):
        raise invalid_request(f"`service_tier` must be a string, got {tier!r}.", "service_tier")


def _validate_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid_request("`messages` is required and must be a non-empty array.", "messages")
    for index, message in enumerate(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
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


@value
class _Asked:
    """What a request says of its output, read once for the bound and its clamp."""

    limit: int | None  # the largest maximum output it names; None when it names none
    field: str | None  # the first of the route's maximum fields it names
    choices: int  # completions billed (_choices)


_ASKED_NOTHING = _Asked(None, None, 1)  # routes without output


def _output(
    route: str, body: Mapping[str, Any], price: ModelPrice | None
) -> tuple[int, dict[str, Any], _Asked]:
    """The most output tokens the call may bill, the fields that make it so, and what the
    request asks of its output."""
    patch: dict[str, Any] = {}
    if route in ("openai.chat", "openai.completions") and body.get("stream") is True:
        # Without usage on the final chunk a stream could not be settled to its actual cost.
        patch["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    fields = _MAX_FIELDS.get(route)
    if fields is None:
        return 0, patch, _ASKED_NOTHING  # embeddings and token counting produce no output
    asked: int | None = None
    first: str | None = None
    for name in fields:
        given = body.get(name)
        if given is not None:
            if first is None:
                first, asked = name, given
            elif given > asked:
                asked = given
    if asked is not None:
        limit = asked
        if price is not None:
            # Above the model's maximum the provider refuses the call, so it cannot bill more.
            limit = min(limit, price.max_output_tokens)
    else:
        # none named: the provider's own default, and the request is left as it was
        limit = _own_limit(route, price)
    choices = _choices(route, body)
    # Predicted output that the model rejects is billed as output on top of what it writes.
    prediction = body.get("prediction") if route == "openai.chat" else None
    predicted = 0 if prediction is None else text_bytes(prediction)
    return (limit + predicted) * choices, patch, _Asked(asked, first, choices)


def _own_limit(route: str, price: ModelPrice | None) -> int:
    """The most output a provider writes when the request names no maximum: 16 tokens on
    legacy completions, else the model's maximum."""
    if route == "openai.completions":
        return COMPLETIONS_DEFAULT_MAX_TOKENS
    return DEFAULT_MAX_OUTPUT_TOKENS if price is None else price.max_output_tokens


def _clamp_field(route: str, asked: _Asked) -> str | None:
    """The field Outlay sets to lower the maximum output: the one the request names, else
    the one the provider honours (on chat completions `max_completion_tokens`, which every
    OpenAI chat model takes, and reasoning models require)."""
    fields = _MAX_FIELDS.get(route)
    if fields is None:
        return None
    if asked.field is not None:
        return asked.field
    if route == "openai.chat":
        return "max_completion_tokens"
    return fields[0]


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
