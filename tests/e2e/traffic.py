"""What the end-to-end suites that drive replicas share: an aiohttp app served on loopback
from a thread of its own (a provider that records what it got), paced load over the
replicas that records every answer, and a bounded wait.

Every call of the load carries a marker of its own (OpenAI's `user` field), so that a
provider can tell which calls it served and a call answered 503 can be told apart from one
that reached the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from .harness import micros

_markers = itertools.count(1)


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve `app` on a free loopback port from a thread of its own, while in the `with`;
    gives its base URL."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        loop.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               detail: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f"\nwhat there was: {detail()}" if detail else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(0.05)


def error_code(answer: httpx.Response) -> str | None:
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic, when the call was sent
    at: float  # and when its answer came
    status: int
    request_id: str
    code: str | None  # the error code of a non-200 (None if unreadable)
    cost: int | None  # micro-USD the gateway said a 200 cost


class Load:
    """`lanes` loops over the replicas (round-robin), each sending a call, waiting `pace_s`
    after a 200 and `backoff_s` after anything else, and again, from a thread of their own
    until stopped. A lane whose replica is down waits for it."""

    def __init__(self, urls: list[str], key: str, body: dict[str, Any], *, lanes: int,
                 stagger_s: float, pace_s: float, backoff_s: float, timeout_s: float) -> None:
        self.urls, self.key, self.body = urls, key, body
        self.lanes, self.stagger_s, self.timeout_s = lanes, stagger_s, timeout_s
        self.pace_s, self.backoff_s = pace_s, backoff_s
        self.answers: dict[str, Answer] = {}  # marker -> the answer it got
        self.lost: list[str] = []  # markers of calls whose connection broke
        self.in_flight: Counter[str] = Counter()  # replica URL -> calls sent, not answered
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the load did not stop"

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.lanes, max_keepalive_connections=self.lanes)
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout_s,
                                     headers={"Authorization": f"Bearer {self.key}"}) as http:
            await asyncio.gather(*(self._lane(http, self.urls[n % len(self.urls)],
                                              n * self.stagger_s) for n in range(self.lanes)))

    async def _lane(self, http: httpx.AsyncClient, url: str, delay: float) -> None:
        await asyncio.sleep(delay)
        while not self.stopping.is_set():
            marker = f"m{next(_markers)}"
            sent = time.monotonic()
            self.in_flight[url] += 1
            try:
                answer = await http.post(f"{url}/v1/chat/completions",
                                         json={**self.body, "user": marker})
            except httpx.ConnectError:
                await asyncio.sleep(0.05)  # the replica is down; wait for it
                continue
            except httpx.TransportError:
                self.lost.append(marker)
                continue
            finally:
                self.in_flight[url] -= 1
            ok = answer.status_code == 200
            cost = answer.headers.get("x-outlay-cost-usd")
            self.answers[marker] = Answer(
                sent, time.monotonic(), answer.status_code,
                answer.headers.get("x-outlay-request-id", ""),
                None if ok else error_code(answer), None if cost is None else micros(cost))
            await asyncio.sleep(self.pace_s if ok else self.backoff_s)

    # -- what it saw ------------------------------------------------------------------
    def seen(self) -> list[Answer]:
        return list(self.answers.values())

    def count(self, status: int) -> int:
        return sum(1 for a in self.seen() if a.status == status)

    @property
    def ok(self) -> dict[str, int]:
        """Request id -> cost in micro-USD, of every 200."""
        return {a.request_id: a.cost or 0 for a in self.seen() if a.status == 200}

    @property
    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.seen())

    @property
    def codes(self) -> Counter[str | None]:
        """The error codes of the answers other than 200."""
        return Counter(a.code for a in self.seen() if a.status != 200)

    @property
    def last_ok(self) -> float:
        """When the latest 200 came (monotonic), 0 if none did."""
        return max((a.at for a in self.seen() if a.status == 200), default=0.0)

    def unexpected(self, statuses: tuple[int, ...] = (402, 429, 503)) -> list[Answer]:
        """Answers neither 200 nor one of `statuses` with an error code."""
        return [a for a in self.seen()
                if a.status != 200 and (a.status not in statuses or a.code is None)]

    def served_again(self, moment: float) -> float | None:
        """How long after `moment` the first call sent after it was answered 200."""
        times = [a.at for a in self.seen() if a.status == 200 and a.sent > moment]
        return min(times) - moment if times else None

    def refused_unavailable(self) -> tuple[int, float]:
        """How many calls were answered 503, and over how long (first sent to last
        answered)."""
        out = [a for a in self.seen() if a.status == 503]
        if not out:
            return 0, 0.0
        return len(out), max(a.at for a in out) - min(a.sent for a in out)
