"""A call's span as the steps note it, and its OTLP/HTTP JSON."""

from __future__ import annotations

import orjson

from outlay.telemetry.spans import (
    CURRENT,
    CallSpan,
    attributes,
    encode,
    noted_admission,
    noted_decision,
    noted_settlement,
    noted_usage,
)


def _span(**fields: object) -> CallSpan:
    return CallSpan(**{"route": "anthropic.messages", "vendor": "anthropic", "llm": True,  # type: ignore[arg-type]
                       "trace_id": "a" * 32, "span_id": "b" * 16, "parent_span_id": None,
                       "start_ns": 1_000, **fields})


def test_notes_fill_the_current_span_and_nothing_without_one() -> None:
    noted_decision("req_1", "m", "allowed", "")  # no span: nothing happens, nothing fails
    span = _span()
    token = CURRENT.set(span)
    try:
        noted_decision("req_1", "claude-x", "allowed", "")
        noted_admission("billing-bot", {"workflow": "nightly"}, "claude-y")
        noted_usage({"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7})
        noted_settlement(200, "settled", 1_234)
    finally:
        CURRENT.reset(token)
    span.end_ns = 2_000
    assert attributes(span) == {
        "gen_ai.system": "anthropic", "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-x", "gen_ai.response.model": "claude-y",
        "gen_ai.usage.input_tokens": 15, "gen_ai.usage.output_tokens": 7,
        "outlay.route": "anthropic.messages", "outlay.vendor": "anthropic",
        "outlay.request_id": "req_1", "outlay.decision": "allowed",
        "outlay.agent": "billing-bot", "outlay.settlement": "settled",
        "outlay.cost_usd": 0.001234, "http.response.status_code": 200,
        "outlay.tag.workflow": "nightly"}


def test_openai_usage_names_and_vendor_calls_without_gen_ai() -> None:
    span = _span(route="openai.embeddings", vendor="openai")
    token = CURRENT.set(span)
    noted_usage({"prompt_tokens": 3, "total_tokens": 3})
    CURRENT.reset(token)
    assert (span.input_tokens, span.output_tokens) == (3, 0)
    vendor = _span(route="vendor.stripe", vendor="stripe", llm=False, decision="refused",
                   code="budget_exceeded", status=402)
    assert not [k for k in attributes(vendor) if k.startswith("gen_ai.")]


def test_encoding_is_otlp_json() -> None:
    refused = _span(decision="refused", code="budget_exceeded", status=402, model="claude-x",
                    parent_span_id="c" * 16, end_ns=500)
    vendor = _span(route="vendor.stripe", vendor="stripe", llm=False, method="GET",
                   decision="allowed", cost_micros=0, end_ns=3_000)
    doc = orjson.loads(encode([refused, vendor], "gw", "1.2.3"))
    (resource,) = doc["resourceSpans"]
    assert resource["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "gw"}},
        {"key": "service.version", "value": {"stringValue": "1.2.3"}}]
    (scope,) = resource["scopeSpans"]
    assert scope["scope"] == {"name": "outlay", "version": "1.2.3"}
    first, second = scope["spans"]
    assert first["name"] == "chat claude-x"
    assert first["parentSpanId"] == "c" * 16
    assert first["status"] == {"code": 2, "message": "budget_exceeded"}
    # an end before the start (a clock step) is written as the start
    assert (first["startTimeUnixNano"], first["endTimeUnixNano"]) == ("1000", "1000")
    assert {"key": "http.response.status_code", "value": {"intValue": "402"}} in \
        first["attributes"]
    assert second["name"] == "GET /vendors/stripe"
    assert "parentSpanId" not in second
    assert "status" not in second
    assert {"key": "outlay.cost_usd", "value": {"doubleValue": 0.0}} in second["attributes"]
