"""The worker's span exporter: calls leave their spans in a bounded queue and go on; one
background task sends them to the collector in batches (OTLP/HTTP JSON), each send bounded by
`timeout_s`. A full queue or a failed send drops spans and counts them: exporting never
slows or fails a call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

import aiohttp

from outlay.config_telemetry import TelemetrySettings
from outlay.telemetry.spans import CURRENT, CallSpan, encode
from outlay.telemetry.trace_context import new_span_id, new_trace_id, parse_traceparent

log = logging.getLogger("outlay")

BATCH = 512  # spans per export at most (the OTel SDK's default batch)
FINAL_FLUSH_S = 1.0  # what a stopping worker gives the spans still queued
WARN_EVERY_S = 60.0


class Exporter:
    """One worker's spans on their way to the collector, and how many went or were lost."""

    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[CallSpan] = asyncio.Queue(settings.max_queue)
        self.exported = 0
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._warned_at = -WARN_EVERY_S
        self._headers = {**settings.headers, "Content-Type": "application/json"}
        # where, for log lines: never the URL's credentials or the headers
        self._where = urlsplit(settings.traces_url).netloc.rpartition("@")[2]
        try:
            self._version = version("outlay")
        except PackageNotFoundError:
            self._version = "unknown"

    def counts(self) -> tuple[int, int]:
        """(spans exported, spans dropped) since the worker started."""
        return self.exported, self.dropped

    @contextlib.contextmanager
    def call(self, route: str, vendor: str, traceparent: str | None, *, llm: bool,
             method: str = "POST") -> Iterator[CallSpan | None]:
        """The span of the call run inside: the call's own while it runs (`CURRENT`), queued
        when it ends. A malformed `traceparent` starts a new trace; one whose caller did not
        sample its trace records nothing, as OpenTelemetry's parent-based sampling does."""
        parent = parse_traceparent(traceparent)
        if parent is not None and not parent.sampled:
            yield None
            return
        span = CallSpan(route, vendor, llm,
                        parent.trace_id if parent else new_trace_id(), new_span_id(),
                        parent.span_id if parent else None, time.time_ns(), method=method)
        token = CURRENT.set(span)
        try:
            yield span
        finally:
            CURRENT.reset(token)
            span.end_ns = time.time_ns()
            self.offer(span)

    def offer(self, span: CallSpan) -> None:
        try:
            self.queue.put_nowait(span)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s), trust_env=False)
        self._task = asyncio.create_task(self._drain())

    async def close(self) -> None:
        """Stop draining; the spans still queued get one last, short, send."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is None:
            return
        try:
            if not self.queue.empty():
                batch = self._take([])
                try:
                    await asyncio.wait_for(self._send(batch), FINAL_FLUSH_S)
                except TimeoutError:
                    self.dropped += len(batch)
            self.dropped += self.queue.qsize()
        finally:
            await self._session.close()

    async def _drain(self) -> None:
        while True:
            batch = self._take([await self.queue.get()])
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                self.dropped += len(batch)  # the worker stops with this batch unsent
                raise

    def _take(self, batch: list[CallSpan]) -> list[CallSpan]:
        while len(batch) < BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def _send(self, batch: list[CallSpan]) -> None:
        assert self._session is not None
        body = encode(batch, self.settings.service_name, self._version)
        failure: str | None = None
        try:
            async with self._session.post(self.settings.traces_url, data=body,
                                          headers=self._headers) as answer:
                await answer.read()
                if not 200 <= answer.status < 300:
                    failure = f"answered HTTP {answer.status}"
        except TimeoutError:
            failure = f"did not answer within {self.settings.timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            failure = f"could not be reached ({type(exc).__name__})"
        if failure is None:
            self.exported += len(batch)
            return
        self.dropped += len(batch)
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("telemetry: the OTLP collector at %s %s; %d span(s) dropped so far",
                        self._where, failure, self.dropped)

