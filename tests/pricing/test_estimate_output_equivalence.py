"""The estimate's output bound, clamp field and clamp, read from the body once, against the
reading they replaced (each walked the body's maximum fields again)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from outlay.policy.decision import Clamp
from outlay.pricing.table import ModelPrice, load_table
from outlay.pricing.tokens import text_bytes

est = importlib.import_module("outlay.pricing.estimate")
TABLE = load_table(None, None)
PRICES = [TABLE.resolve("gpt-4o-mini"), TABLE.resolve("claude-sonnet-4-5"), None]


def _old_output(route: str, body: Mapping[str, Any], price: ModelPrice | None
                ) -> tuple[int, dict[str, Any]]:
    patch: dict[str, Any] = {}
    if route in ("openai.chat", "openai.completions") and body.get("stream") is True:
        patch["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    fields = est._MAX_FIELDS.get(route)
    if fields is None:
        return 0, patch
    requested = [body[name] for name in fields if body.get(name) is not None]
    if requested:
        limit = max(requested)
        if price is not None:
            limit = min(limit, price.max_output_tokens)
    else:
        limit = est._own_limit(route, price)
    choices = est._choices(route, body)
    prediction = body.get("prediction") if route == "openai.chat" else None
    predicted = 0 if prediction is None else text_bytes(prediction)
    return (limit + predicted) * choices, patch


def _old_clamp_field(route: str, body: Mapping[str, Any]) -> str | None:
    fields = est._MAX_FIELDS.get(route)
    if fields is None:
        return None
    for name in fields:
        if body.get(name) is not None:
            return name
    if route == "openai.chat":
        return "max_completion_tokens"
    return str(fields[0])


def _old_output_clamp(route: str, body: Mapping[str, Any], price: ModelPrice, numerator: int,
                      output_price: int) -> Clamp:
    choices = est._choices(route, body)
    requested = [body[name] for name in est._MAX_FIELDS.get(route, ())
                 if body.get(name) is not None]
    named = int(min(max(requested), price.max_output_tokens)) if requested else None
    own = est._own_limit(route, price) if named is None else named
    return Clamp(numerator - own * choices * output_price, choices * output_price, own,
                 choices, named=named is not None)


_maybe = st.one_of(st.none(), st.integers(0, 300_000))
_bodies = st.fixed_dictionaries({}, optional={
    "max_tokens": _maybe, "max_completion_tokens": _maybe, "max_output_tokens": _maybe,
    "n": st.one_of(st.none(), st.integers(1, 4)), "best_of": st.integers(1, 4),
    "prompt": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3)),
    "stream": st.booleans(), "stream_options": st.just({"include_usage": False}),
    "prediction": st.one_of(st.none(), st.text(max_size=10)),
})


@given(st.sampled_from(list(est.ROUTES)), _bodies, st.sampled_from(PRICES),
       st.integers(0, 10**12), st.integers(0, 10**8))
def test_output_reading_is_the_old_one(route: str, body: dict[str, Any],
                                       price: ModelPrice | None, numerator: int,
                                       output_price: int) -> None:
    tokens, patch, asked = est._output(route, body, price)
    assert (tokens, patch) == _old_output(route, body, price)
    assert est._clamp_field(route, asked) == _old_clamp_field(route, body)
    if price is not None and route in est._MAX_FIELDS:
        assert est._output_clamp(route, price, numerator, output_price, asked) == \
            _old_output_clamp(route, body, price, numerator, output_price)


_json_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                   blacklist_categories=()), max_size=20)
_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), _json_text),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(_json_text, inner, max_size=4)),
                     max_leaves=20)


@given(_json_text)
def test_text_bytes_of_a_string_are_its_utf8_bytes(text: str) -> None:
    assert text_bytes(text) == len(text.encode("utf-8", "surrogatepass"))


@given(st.lists(st.dictionaries(_json_text, _json, max_size=4), min_size=1, max_size=4))
def test_messages_are_counted_as_text_bytes_count_them(messages: list[dict[str, Any]]) -> None:
    # parts without a type: every key and value counted as text_bytes counts it
    tokens = importlib.import_module("outlay.pricing.tokens")
    plain = [{k: v for k, v in m.items() if k not in ("type", "audio")} for m in messages]
    bound = tokens._Bound(0)
    bound.messages(plain)
    if not bound.opaque and not any(_typed(m) for m in plain):
        assert bound.tokens == tokens.PER_REQUEST_TOKENS + \
            tokens.PER_MESSAGE_TOKENS * len(plain) + text_bytes(plain)


def _typed(value: object) -> bool:
    if isinstance(value, dict):
        return "type" in value or "audio" in value or any(_typed(v) for v in value.values())
    if isinstance(value, list):
        return any(_typed(v) for v in value)
    return False
