"""A mock OpenAI-compatible provider on loopback that enforces its own limits per API key, as
real providers do: a rolling minute of requests (429 with Retry-After beyond), and counts of
what it saw (calls, 429s, calls in flight at once), for the traffic-shaping tests to check
that the gateway never sends an upstream key more than its limits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from .traffic import serve_in_thread

USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


@dataclass
class KeySeen:
    calls: list[float] = field(default_factory=list)  # monotonic time of each call let in
    refused: int = 0  # calls the provider answered 429 (its own limit, or scripted)
    in_flight: int = 0
    most_in_flight: int = 0


@dataclass
class PacedProvider:
    rpm: int = 60  # per key, per rolling minute
    latency_s: float = 0.0
    url: str = ""
    # key -> Retry-After (seconds) to answer its next call with, once (an upstream 429)
    refuse_next: dict[str, int] = field(default_factory=dict)
    keys: dict[str, KeySeen] = field(default_factory=lambda: defaultdict(KeySeen))
    _recent: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, key: str) -> KeySeen:
        with self._lock:
            return self.keys[key]

    async def chat(self, request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        await request.read()
        now = time.monotonic()
        with self._lock:
            seen = self.keys[key]
            scripted = self.refuse_next.pop(key, None)
            recent = self._recent[key]
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if scripted is not None or len(recent) >= self.rpm:
                seen.refused += 1
                retry = scripted if scripted is not None else int(recent[0] + 60 - now) + 1
                return web.json_response(
                    {"error": {"message": "Rate limit reached", "type": "requests",
                               "code": "rate_limit_exceeded"}},
                    status=429, headers={"Retry-After": str(retry)})
            recent.append(now)
            seen.calls.append(now)
            seen.in_flight += 1
            seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        finally:
            with self._lock:
                seen.in_flight -= 1
        return web.json_response({
            "id": "chatcmpl-paced", "object": "chat.completion", "created": 1_735_689_600,
            "model": "gpt-4o-mini-2024-07-18", "usage": USAGE,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}]})


@contextmanager
def paced_provider(rpm: int = 60, latency_s: float = 0.0) -> Iterator[PacedProvider]:
    provider = PacedProvider(rpm=rpm, latency_s=latency_s)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", provider.chat)
    with serve_in_thread(app) as provider.url:
        yield provider
