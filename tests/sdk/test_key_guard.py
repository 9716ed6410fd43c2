"""intercept_all keeps the Outlay key from every host but the gateway: plain HTTP clients
lose the header carrying it, and openai-agents' trace exporter, pointed at a loopback
"tracing" endpoint, never sends it."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import httpx2
import pytest
import requests
from agents import trace
from agents.tracing import set_trace_processors
from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor, default_processor

import outlay

KEY = "olk_guarded_0123456789"
TIMEOUT_S = 10.0


class Recorded(http.server.BaseHTTPRequestHandler):
    """Answers 200 to anything, keeping each request's headers and path."""

    seen: list[tuple[str, dict[str, str]]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append((self.path, dict(self.headers.items())))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def server() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    handler = type("Handler", (Recorded,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT_S)


@pytest.fixture
def hosts() -> Iterator[tuple[tuple[str, list], tuple[str, list]]]:
    """A stand-in gateway and another host (a tracing endpoint), both on loopback."""
    with server() as gateway, server() as elsewhere:
        yield gateway, elsewhere
    outlay.restore()


def _send_everywhere(url: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "X-Other": "kept",
               "x-api-key": KEY}
    with httpx2.Client(timeout=TIMEOUT_S) as client:
        client.post(f"{url}/httpx2", headers=headers)
    with httpx.Client(timeout=TIMEOUT_S) as plain:
        plain.post(f"{url}/httpx", headers=headers)
    with requests.Session() as session:
        session.post(f"{url}/requests", headers=headers, timeout=TIMEOUT_S)


def test_the_key_reaches_the_gateway_and_no_other_host(hosts: tuple) -> None:
    (gateway, at_gateway), (elsewhere, at_other) = hosts
    outlay.intercept_all(KEY, base_url=gateway)
    _send_everywhere(gateway)
    _send_everywhere(elsewhere)
    assert [path for path, _ in at_gateway] == ["/httpx2", "/httpx", "/requests"]
    for _, headers in at_gateway:
        lower = {k.lower(): v for k, v in headers.items()}
        assert lower["authorization"] == f"Bearer {KEY}"
        assert lower["x-api-key"] == KEY
    assert [path for path, _ in at_other] == ["/httpx2", "/httpx", "/requests"]
    for _, headers in at_other:
        lower = {k.lower(): v for k, v in headers.items()}
        assert "authorization" not in lower
        assert "x-api-key" not in lower
        assert lower["x-other"] == "kept"
        assert KEY not in repr(headers)


def test_restore_lets_headers_through_again(hosts: tuple) -> None:
    (gateway, _), (elsewhere, at_other) = hosts
    outlay.intercept_all(KEY, base_url=gateway)
    outlay.restore()
    with httpx2.Client(timeout=TIMEOUT_S) as client:
        client.post(f"{elsewhere}/after", headers={"Authorization": "Bearer mine"})
    assert at_other[0][1]["Authorization"] == "Bearer mine"


def _traced(endpoint: str, own_key: str | None) -> None:
    """One trace through openai-agents' exporter to `endpoint`, flushed before returning."""
    exporter = BackendSpanExporter(endpoint=f"{endpoint}/v1/traces/ingest")
    if own_key is not None:
        exporter.set_api_key(own_key)
    processor = BatchTraceProcessor(exporter)
    set_trace_processors([processor])
    try:
        with trace("conformance"):
            pass
        processor.force_flush()
    finally:
        processor.shutdown()
        set_trace_processors([default_processor()])


def test_openai_agents_traces_never_carry_the_key(hosts: tuple,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (gateway, _), (tracing, received) = hosts
    # configured as the agent was: the Outlay key in OPENAI_API_KEY
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_AGENTS_DISABLE_TRACING", raising=False)
    outlay.intercept_all(KEY, base_url=gateway)
    _traced(tracing, None)
    assert received == []  # traces whose only credential is the key are not sent

    # a tracing key of the agent's own still sends them, with that key
    _traced(tracing, "sk-tracing-own")
    assert received, "the exporter sent nothing"
    assert {headers["Authorization"] for _, headers in received} == {"Bearer sk-tracing-own"}
    assert all(KEY not in repr(headers) for _, headers in received)


def test_without_interception_the_exporter_sends_the_key(hosts: tuple,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """What intercept_all prevents: the exporter reads OPENAI_API_KEY and sends it."""
    _, (tracing, received) = hosts
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_AGENTS_DISABLE_TRACING", raising=False)
    _traced(tracing, None)
    assert {headers["Authorization"] for _, headers in received} == {f"Bearer {KEY}"}
