"""Driving load at a target: wrk for throughput and latency, a small asyncio client for the
time to the first chunk of a stream, a sampler for the memory of the gateway's processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nginx_mock as mock
from measure import WrkResult, parse_wrk, percentile, tree_rss_bytes, wrk_script
from procs import http_json
from scenarios import Target


def run_wrk(
    target: Target, connections: int, seconds: float, script_dir: Path, *,
    cpus: str | None, name: str,
) -> WrkResult:
    script = script_dir / f"{name}.lua"
    script.write_text(wrk_script(target.path, mock.request_body(), target.tokens,
                                 target.headers))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "--latency", "-s", str(script), target.url + target.path]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return parse_wrk(done.stdout)


@dataclass(frozen=True)
class StreamResult:
    requests: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float  # to the last byte of the stream
    failures: int


async def _streams(target: Target, requests: int, warmup: int) -> StreamResult:
    body = mock.request_body(stream=True, model=target.stream_model).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if target.tokens[0]:
        headers["Authorization"] = f"Bearer {target.tokens[0]}"
    headers.update(target.headers if target.stream_headers is None else target.stream_headers)
    ttfb: list[float] = []
    total: list[float] = []
    failures = 0
    # one connection, one request at a time: the latency of one stream, not a load test
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for i in range(warmup + requests):
            started = time.perf_counter()
            async with session.post(target.url + target.stream_path, data=body,
                                    headers=headers) as answer:
                first = await answer.content.readany()
                at_first = time.perf_counter()
                rest = [first]
                while chunk := await answer.content.readany():
                    rest.append(chunk)
                ended = time.perf_counter()
            whole = b"".join(rest)
            if answer.status != 200 or b"[DONE]" not in whole:
                failures += 1
                continue
            if i >= warmup:
                ttfb.append((at_first - started) * 1000)
                total.append((ended - started) * 1000)
    if not ttfb:
        raise RuntimeError(f"every stream failed (last status {answer.status})")
    return StreamResult(len(ttfb), percentile(ttfb, 50), percentile(ttfb, 99),
                        percentile(total, 50), failures)


def run_streams(target: Target, requests: int, warmup: int = 30) -> StreamResult:
    return asyncio.run(_streams(target, requests, warmup))


def smoke(target: Target) -> None:
    """One plain and one streamed call must come back whole before any load is sent."""
    status, answer = http_json("POST", target.url + target.path,
                               json.loads(mock.request_body()), target.tokens[0] or None,
                               headers=target.headers)
    if status != 200 or not isinstance(answer, dict) or "choices" not in answer:
        raise RuntimeError(f"a plain call answered {status}: {str(answer)[:300]}")
    if not target.streams:
        return
    result = run_streams(target, requests=2, warmup=0)
    if result.failures:
        raise RuntimeError("a streamed call did not come back whole")


class RssSampler:
    """Samples the resident memory of one process tree at a time; keeps each one's peak."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peaks: dict[str, int] = {}
        self._watched: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self, name: str, pid: int) -> None:
        self.peaks[name] = max(self.peaks.get(name, 0), tree_rss_bytes(pid))

    @contextlib.contextmanager
    def watching(self, name: str, pid: int | None) -> Iterator[None]:
        if pid is None:
            yield
            return
        self.sample(name, pid)
        self._watched = (name, pid)
        try:
            yield
        finally:
            self._watched = None
            self.sample(name, pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            watched = self._watched
            if watched is not None:
                self.sample(*watched)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
