"""OpenTelemetry: one span per agent call, exported over OTLP/HTTP off the request path.

trace_context.py  W3C `traceparent`: the trace a call joins (pure)
spans.py          the span a call fills as it goes, and its OTLP/HTTP JSON encoding (pure)
export.py         the bounded queue a worker drains in batches to the collector
"""
