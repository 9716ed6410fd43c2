"""OpenTelemetry through a real `outlay serve`: each call's span reaches an OTLP/HTTP receiver
the test runs on loopback, with the GenAI and Outlay attributes and the caller's trace; with
the receiver down (refusing, or holding the connection without answering) calls go on as
fast as ever and the spans lost are counted in /metrics."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from .harness import Gateway, Launch, unique
from .test_e2e_metrics import scrape

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CHAT = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
EMAIL = {"from": "a@example.com", "to": ["b@example.com"], "subject": "hi", "html": "<p>hi</p>"}
WAIT_S = 15.0


class Receiver:
    """An OTLP/HTTP JSON receiver: every span posted to /v1/traces, with its attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.paths.append(self.path)
                received.content_types.append(self.headers["Content-Type"])
                for resource in json.loads(body)["resourceSpans"]:
                    for scope in resource["scopeSpans"]:
                        received.spans.extend(scope["spans"])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def span_of(self, request_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for span in list(self.spans):
                if attributes(span).get("outlay.request_id") == request_id:
                    return span
            time.sleep(0.05)
        raise AssertionError(f"no span of {request_id} in {WAIT_S} s; got {self.spans}")


def attributes(span: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for item in span["attributes"]:
        (kind, value), = item["value"].items()
        out[item["key"]] = int(value) if kind == "intValue" else value
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        thread.join(timeout=5)


def test_each_call_exports_its_span_joining_the_callers_trace(
        launch: Launch, receiver: Receiver) -> None:
    gateway = launch({"telemetry": {"otlp_endpoint": receiver.url, "service_name": "gw-e2e"}})
    agent = unique("traced")
    gateway.set_policy(f"agent:{agent}", {"rpm": 3})
    key = gateway.mint_key(agent, labels={"team": "billing"})["key"]
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway.url, timeout=15) as client:
        joined = client.post("/v1/chat/completions", json=CHAT, headers={
            **auth, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            "X-Outlay-Tags": "workflow=nightly-billing, team=someone-else"})
        malformed = client.post("/v1/chat/completions", json=CHAT, headers={
            **auth, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01-extra"})
        invalid = client.post("/v1/chat/completions", json={"model": 5}, headers=auth)
        vendor = client.post("/vendors/resend/emails", json=EMAIL, headers={
            **auth, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        limited = client.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert joined.status_code == malformed.status_code == vendor.status_code == 200
    assert invalid.status_code == 400
    assert limited.status_code == 429

    span = receiver.span_of(joined.headers["X-Outlay-Request-Id"])
    assert span["traceId"] == TRACE_ID
    assert span["parentSpanId"] == PARENT_ID
    assert len(span["spanId"]) == 16
    assert span["spanId"] != PARENT_ID
    assert span["name"] == "chat gpt-4o-mini"
    assert span["kind"] == 3
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0
    got = attributes(span)
    usage = joined.json()["usage"]
    assert got["gen_ai.system"] == "openai"
    assert got["gen_ai.request.model"] == "gpt-4o-mini"
    assert got["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert got["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert got["outlay.decision"] == "allowed"
    assert got["outlay.agent"] == agent
    assert got["outlay.cost_usd"] == pytest.approx(float(joined.headers["X-Outlay-Cost-USD"]))
    # the key's labels win over the call's tags
    assert got["outlay.tag.workflow"] == "nightly-billing"
    assert got["outlay.tag.team"] == "billing"
    assert receiver.paths[0] == "/v1/traces"
    assert receiver.content_types[0] == "application/json"

    fresh = receiver.span_of(malformed.headers["X-Outlay-Request-Id"])
    assert fresh["traceId"] != TRACE_ID
    assert len(fresh["traceId"]) == 32
    assert "parentSpanId" not in fresh

    refused = [s for s in receiver.spans if attributes(s).get("outlay.decision") == "invalid"]
    deadline = time.monotonic() + WAIT_S
    while not refused and time.monotonic() < deadline:
        time.sleep(0.05)
        refused = [s for s in receiver.spans
                   if attributes(s).get("outlay.decision") == "invalid"]
    assert refused, receiver.spans
    assert attributes(refused[0])["outlay.code"] == "invalid_request"
    assert attributes(refused[0])["http.response.status_code"] == 400
    assert refused[0]["status"]["code"] == 2

    paid = receiver.span_of(vendor.headers["X-Outlay-Request-Id"])
    assert paid["traceId"] == TRACE_ID
    assert paid["name"] == "POST /vendors/resend"
    sent = attributes(paid)
    assert not [name for name in sent if name.startswith("gen_ai.")]
    assert sent["outlay.vendor"] == "resend"
    assert sent["outlay.decision"] == "allowed"
    assert sent["outlay.cost_usd"] == pytest.approx(float(vendor.headers["X-Outlay-Cost-USD"]))

    # a call a policy refused: its agent and labels, the refusal's code, an error status
    limited_span = receiver.span_of(limited.headers["X-Outlay-Request-Id"])
    refusal = attributes(limited_span)
    assert refusal["outlay.decision"] == "refused"
    assert refusal["outlay.code"] == "rate_limit_exceeded"
    assert refusal["outlay.agent"] == agent
    assert refusal["outlay.tag.team"] == "billing"
    assert refusal["http.response.status_code"] == 429
    assert "gen_ai.usage.input_tokens" not in refusal
    assert limited_span["status"] == {"code": 2, "message": "rate_limit_exceeded"}

    # a streamed Anthropic message: its usage as the stream's events report it
    streamer = gateway.mint_key(unique("streamer"))["key"]  # the agent's rpm is used up
    input_tokens, output_tokens, rid = _anthropic_stream(gateway, streamer)
    streamed = attributes(receiver.span_of(rid))
    assert streamed["gen_ai.system"] == "anthropic"
    assert streamed["gen_ai.operation.name"] == "chat"
    assert streamed["gen_ai.request.model"] == "claude-haiku-4-5"
    assert streamed["gen_ai.usage.input_tokens"] == input_tokens > 0
    assert streamed["gen_ai.usage.output_tokens"] == output_tokens > 0
    assert streamed["outlay.settlement"] == "settled"

    counts = _spans_counted(gateway, 6)
    assert counts == (6.0, 0.0)


def _anthropic_stream(gateway: Gateway, key: str) -> tuple[int, int, str]:
    """(input tokens, output tokens, request id) of a streamed Anthropic message."""
    body = {"model": "claude-haiku-4-5", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    usage: dict[str, int] = {}
    with httpx.Client(base_url=gateway.url, timeout=15) as client, client.stream(
            "POST", "/v1/messages", json=body,
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"}) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line.removeprefix("data:"))
            found = event.get("usage") or event.get("message", {}).get("usage") or {}
            usage.update({k: v for k, v in found.items() if isinstance(v, int)})
        rid = answer.headers["X-Outlay-Request-Id"]
    return usage["input_tokens"], usage["output_tokens"], rid


def _spans_counted(gateway: Gateway, at_least: int) -> tuple[float, float]:
    """(exported, dropped) from /metrics once they account for `at_least` spans."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = scrape(gateway)
        counts = (got[("outlay_telemetry_spans_exported_total", ())],
                  got[("outlay_telemetry_spans_dropped_total", ())])
        if sum(counts) >= at_least or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


@contextlib.contextmanager
def _silent_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def _refused_port() -> str:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


CALLS = 40


@pytest.mark.parametrize("down", ["refused", "silent"])
def test_a_collector_down_neither_slows_nor_fails_calls(launch: Launch, down: str) -> None:
    with contextlib.ExitStack() as stack:
        endpoint = (_refused_port() if down == "refused"
                    else stack.enter_context(_silent_collector()))
        # a silent collector holds each export for 30 s: a call that waited on one would
        # take that long
        gateway = launch({"telemetry": {"otlp_endpoint": endpoint, "timeout_s": 30,
                                        "max_queue": 8}})
        key = gateway.mint_key(unique("untraced"))["key"]
        slowest = 0.0
        with httpx.Client(base_url=gateway.url, timeout=15,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(CALLS):
                began = time.monotonic()
                answer = client.post("/v1/chat/completions", json=CHAT)
                slowest = max(slowest, time.monotonic() - began)
                assert answer.status_code == 200, answer.text
        assert slowest < 5.0, f"a call took {slowest:.1f} s"
        exported, dropped = _spans_counted(gateway, CALLS if down == "refused" else 1)
        assert exported == 0
        if down == "refused":
            assert dropped == CALLS
        else:
            # one batch waits on the silent collector, the queue holds 8: the rest are lost
            assert dropped >= CALLS - 8 - CALLS // 2
            assert dropped > 0
