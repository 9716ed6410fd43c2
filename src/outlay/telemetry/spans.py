"""The span of one agent call, filled in as the call goes (decided, settled), and the OTLP/HTTP
JSON a batch of them is sent as. Pure: no I/O.

The request path does not carry the span from step to step: the route sets it as the call's
own (`CURRENT`, a context variable: each request runs in its task) and the steps that know a
fact note it there (`noted_decision` at the decision, `noted_usage` and `noted_settlement` at
settlement). With telemetry off nothing is set and each note is one lookup that finds none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson

from outlay.policy.money import micros_to_usd
from outlay.pricing.usage import count

SCOPE_NAME = "outlay"
SPAN_KIND_CLIENT = 3  # the call leaves for a provider or vendor; OTLP's SpanKind
STATUS_ERROR = 2
# gen_ai.operation.name of each LLM route (GenAI semantic conventions)
_OPERATIONS = {"openai.chat": "chat", "anthropic.messages": "chat", "openai.responses": "chat",
               "openai.completions": "text_completion", "openai.embeddings": "embeddings"}


@dataclass
class CallSpan:
    """What one call's span says; set by the route, then noted by the steps."""

    route: str  # "openai.chat", "vendor.stripe", …
    vendor: str  # the provider (openai, anthropic) or vendor
    llm: bool  # gen_ai.* attributes only where they apply
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    method: str = "POST"
    end_ns: int = 0
    request_id: str | None = None
    model: str | None = None
    model_sent: str | None = None  # when a budget downgraded the call
    decision: str | None = None  # allowed, refused or invalid
    code: str = ""
    agent: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    settlement: str | None = None
    status: int | None = None
    cost_micros: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


CURRENT: ContextVar[CallSpan | None] = ContextVar("outlay_call_span", default=None)


def noted_decision(request_id: str, model: str | None, decision: str, code: str,
                   status: int | None = None) -> None:
    """The call was decided: allowed (code empty, or a shadowed breach), refused, invalid."""
    span = CURRENT.get()
    if span is None:
        return
    span.request_id, span.model, span.decision, span.code = request_id, model, decision, code
    if status is not None:
        span.status = status


def noted_admission(agent: str, labels: Mapping[str, str], model_sent: str | None) -> None:
    span = CURRENT.get()
    if span is not None:
        span.agent, span.labels, span.model_sent = agent, labels, model_sent


def noted_usage(usage: Mapping[str, Any]) -> None:
    """The provider's usage report: input and output tokens, however the provider names
    them (Anthropic's cached input is input too)."""
    span = CURRENT.get()
    if span is None:
        return
    span.input_tokens = (count(usage, "prompt_tokens") + count(usage, "input_tokens")
                         + count(usage, "cache_creation_input_tokens")
                         + count(usage, "cache_read_input_tokens"))
    span.output_tokens = count(usage, "completion_tokens") + count(usage, "output_tokens")


def noted_settlement(status: int, settlement: str, cost_micros: int) -> None:
    span = CURRENT.get()
    if span is not None:
        span.status, span.settlement, span.cost_micros = status, settlement, cost_micros


def encode(spans: Iterable[CallSpan], service_name: str, version: str) -> bytes:
    """An OTLP/HTTP JSON ExportTraceServiceRequest (ids in hex, times as decimal strings)."""
    return orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": _attributes({"service.name": service_name,
                                                "service.version": version})},
        "scopeSpans": [{"scope": {"name": SCOPE_NAME, "version": version},
                        "spans": [_span(span) for span in spans]}],
    }]})


def _span(span: CallSpan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id, "spanId": span.span_id, "name": _name(span),
        "kind": SPAN_KIND_CLIENT, "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(max(span.end_ns, span.start_ns)),
        "attributes": _attributes(attributes(span)),
    }
    if span.parent_span_id is not None:
        out["parentSpanId"] = span.parent_span_id
    if span.decision in ("refused", "invalid") or (span.status or 0) >= 500:
        out["status"] = {"code": STATUS_ERROR, "message": span.code or f"HTTP {span.status}"}
    return out


def _name(span: CallSpan) -> str:
    if not span.llm:
        return f"{span.method} /vendors/{span.vendor}"
    operation = _OPERATIONS.get(span.route, span.route)
    return f"{operation} {span.model}" if span.model else operation


def attributes(span: CallSpan) -> dict[str, str | int | float]:
    """The span's attributes: GenAI semantic conventions on LLM calls, Outlay's own on all."""
    found: dict[str, str | int | float | None] = {}
    if span.llm:
        found |= {"gen_ai.system": span.vendor,
                  "gen_ai.operation.name": _OPERATIONS.get(span.route),
                  "gen_ai.request.model": span.model,
                  "gen_ai.response.model": span.model_sent,
                  "gen_ai.usage.input_tokens": span.input_tokens,
                  "gen_ai.usage.output_tokens": span.output_tokens}
    found |= {"outlay.route": span.route, "outlay.vendor": span.vendor,
              "outlay.request_id": span.request_id, "outlay.decision": span.decision,
              "outlay.code": span.code or None, "outlay.agent": span.agent,
              "outlay.settlement": span.settlement,
              "outlay.cost_usd": (None if span.cost_micros is None
                                  else float(micros_to_usd(span.cost_micros))),
              "http.response.status_code": span.status or None}
    found |= {f"outlay.tag.{name}": value for name, value in sorted(span.labels.items())}
    return {key: value for key, value in found.items() if value is not None}


def _attributes(values: Mapping[str, str | int | float]) -> list[dict[str, Any]]:
    out = []
    for key, value in values.items():
        if isinstance(value, str):
            typed: dict[str, Any] = {"stringValue": str(value)}
        elif isinstance(value, int):
            typed = {"intValue": str(value)}  # int64 is a string in OTLP's JSON
        else:
            typed = {"doubleValue": value}
        out.append({"key": key, "value": typed})
    return out
