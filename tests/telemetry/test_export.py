"""The exporter: batches to the collector, and loses spans (counted) rather than hold a call."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from outlay.config_telemetry import TelemetrySettings
from outlay.telemetry.export import Exporter
from outlay.telemetry.spans import CURRENT

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.status, self.delay_s = status, delay_s
        self.batches: list[list[dict[str, object]]] = []
        self.headers: list[dict[str, str]] = []

    async def traces(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        doc = orjson.loads(await request.read())
        self.batches.append(doc["resourceSpans"][0]["scopeSpans"][0]["spans"])
        await asyncio.sleep(self.delay_s)
        return web.json_response({}, status=self.status)


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    servers: list[TestServer] = []

    async def start(collector: Collector) -> str:
        app = web.Application()
        app.router.add_post("/v1/traces", collector.traces)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/v1/traces"

    yield start
    for server in servers:
        await server.close()


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - counts, no event
            await asyncio.sleep(0.01)


async def test_spans_go_in_batches_with_the_configured_headers(serve) -> None:  # type: ignore[no-untyped-def]
    collector = Collector()
    url = await serve(collector)
    exporter = Exporter(TelemetrySettings(url, headers={"x-api-key": "k" * 20}))
    exporter.start()
    try:
        for _ in range(5):
            with exporter.call("openai.chat", "openai", f"00-{TRACE}-{PARENT}-01",
                               llm=True) as span:
                assert CURRENT.get() is span
            assert CURRENT.get() is None
        await _until(lambda: exporter.exported == 5)
    finally:
        await exporter.close()
    assert exporter.counts() == (5, 0)
    spans = [s for batch in collector.batches for s in batch]
    assert {s["traceId"] for s in spans} == {TRACE}
    assert collector.headers[0]["x-api-key"] == "k" * 20


async def test_an_unsampled_parent_records_nothing() -> None:
    exporter = Exporter(TelemetrySettings("http://127.0.0.1:9/v1/traces"))
    with exporter.call("openai.chat", "openai", f"00-{TRACE}-{PARENT}-00", llm=True) as span:
        assert span is None
        assert CURRENT.get() is None
    assert exporter.queue.empty()


async def test_a_full_queue_drops_and_counts() -> None:
    exporter = Exporter(TelemetrySettings("http://127.0.0.1:9/v1/traces", max_queue=3))
    for _ in range(5):  # not started: nothing drains
        with exporter.call("vendor.stripe", "stripe", None, llm=False):
            pass
    assert exporter.counts() == (0, 2)


@pytest.mark.parametrize("status", [400, 503])
async def test_a_refusing_collector_loses_the_batch(serve, status: int,  # type: ignore[no-untyped-def]
                                                     caplog: pytest.LogCaptureFixture) -> None:
    url = await serve(Collector(status=status))
    exporter = Exporter(TelemetrySettings(url, headers={"authorization": "Bearer sekrit-123456"}))
    await _one_span_lost(exporter)
    assert f"answered HTTP {status}" in caplog.text
    assert "sekrit" not in caplog.text


async def test_a_slow_collector_times_out_and_a_stop_does_not_wait_for_it(serve) -> None:  # type: ignore[no-untyped-def]
    url = await serve(Collector(delay_s=30))
    exporter = Exporter(TelemetrySettings(url, timeout_s=0.2, max_queue=2))
    exporter.start()
    with exporter.call("openai.chat", "openai", None, llm=True):
        pass
    await _until(lambda: exporter.dropped == 1)
    with exporter.call("openai.chat", "openai", None, llm=True):
        pass
    loop = asyncio.get_running_loop()
    began = loop.time()
    await exporter.close()  # the last span gets one short try
    assert loop.time() - began < 2.0
    assert exporter.counts() == (0, 2)


async def test_an_unreachable_collector_loses_the_batch(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    await _one_span_lost(Exporter(TelemetrySettings(
        f"http://user:sekrit@127.0.0.1:{port}/v1/traces")))
    assert f"collector at 127.0.0.1:{port} could not be reached" in caplog.text
    assert "sekrit" not in caplog.text


async def _one_span_lost(exporter: Exporter) -> None:
    """One call's span, which the collector does not take: dropped and counted."""
    exporter.start()
    try:
        with exporter.call("openai.chat", "openai", None, llm=True):
            pass
        await _until(lambda: exporter.dropped == 1)
    finally:
        await exporter.close()
    assert exporter.counts() == (0, 1)
