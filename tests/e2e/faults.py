"""The fault suite's means: an OpenAI-compatible provider on loopback that counts the calls
it serves, paced load over the replicas recording every answer, the books read straight
from PostgreSQL, and the one check every fault must leave true.

Every call asks the exact model (`harness.EXACT_MODEL`): reserved and charged the same
PER_CALL, so money and calls can be compared one for one. Each call carries a marker of
its own (OpenAI's `user` field) that the provider records, so a call answered 503 can be
told apart from one the provider served.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web

from .harness import EXACT_MODEL, EXACT_PRICES, EXACT_TOKENS, micros
from .replicas import Replicas

PER_CALL = EXACT_TOKENS * EXACT_PRICES[EXACT_MODEL]["output"]  # micro-USD
LATENCY_S = 0.2  # the provider's: calls are in flight when a fault strikes
LANES = 8  # over the replicas, round-robin
PACE_S = 0.05  # a lane's wait between two calls
SETTLE_TIMEOUT_S = 25.0  # the reaper's 5 s, PostgreSQL reconnecting, and a margin
_markers = itertools.count(1)


@dataclass
class Provider:
    """What the provider served: each marker it got, once per call."""

    url: str = ""
    served: Counter[str] = field(default_factory=Counter)


PROVIDER = web.AppKey("provider", Provider)


async def _chat(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[PROVIDER].served[str(body.get("user"))] += 1  # counted on arrival: served
    await asyncio.sleep(LATENCY_S)
    return web.json_response({
        "id": "chatcmpl-fault", "object": "chat.completion", "created": 1_735_689_600,
        "model": body.get("model"), "choices": [{"index": 0, "finish_reason": "length",
                                                 "message": {"role": "assistant",
                                                             "content": "word " * 24}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": EXACT_TOKENS,
                  "total_tokens": 5 + EXACT_TOKENS}})


def run_provider() -> Iterator[Provider]:
    """The provider in a thread of its own, for as long as the generator is not closed."""
    found = Provider()
    app = web.Application()
    app[PROVIDER] = found
    app.router.add_post("/v1/chat/completions", _chat)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield found
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        loop.close()


def replica_config(provider: Provider) -> dict[str, Any]:
    return {"providers": {"openai": {"endpoints": [
        {"base_url": f"{provider.url}/v1", "api_key": "sk-fault-suite"}]}},
        "prices": EXACT_PRICES}


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic, when the call was sent
    at: float  # and when its answer came
    status: int
    request_id: str
    code: str | None


class Load:
    """LANES loops over the replicas, each sending a call, waiting PACE_S, and again, from
    a thread of their own until stopped. A lane whose replica is down waits for it."""

    def __init__(self, urls: list[str], key: str) -> None:
        self.urls, self.key = urls, key
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
        limits = httpx.Limits(max_connections=LANES, max_keepalive_connections=LANES)
        async with httpx.AsyncClient(limits=limits, timeout=15,
                                     headers={"Authorization": f"Bearer {self.key}"}) as http:
            await asyncio.gather(*(self._lane(http, self.urls[n % len(self.urls)],
                                              n * PACE_S / LANES) for n in range(LANES)))

    async def _lane(self, http: httpx.AsyncClient, url: str, delay: float) -> None:
        await asyncio.sleep(delay)
        while not self.stopping.is_set():
            marker = f"m{next(_markers)}"
            sent = time.monotonic()
            body = {"model": EXACT_MODEL, "max_tokens": EXACT_TOKENS, "user": marker,
                    "messages": [{"role": "user", "content": "hi"}]}
            self.in_flight[url] += 1
            try:
                answer = await http.post(f"{url}/v1/chat/completions", json=body)
            except httpx.ConnectError:
                await asyncio.sleep(0.05)  # the replica is down; wait for it
                continue
            except httpx.TransportError:
                self.lost.append(marker)
                continue
            finally:
                self.in_flight[url] -= 1
            code = None
            if answer.status_code != 200:
                try:
                    code = answer.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = "unreadable"
            self.answers[marker] = Answer(sent, time.monotonic(), answer.status_code,
                                          answer.headers.get("x-outlay-request-id", ""), code)
            await asyncio.sleep(PACE_S)

    # -- what it saw ------------------------------------------------------------------
    def count(self, status: int) -> int:
        return sum(1 for a in list(self.answers.values()) if a.status == status)

    def served_again(self, moment: float) -> float | None:
        """How long after `moment` the first call sent after it was answered 200."""
        times = [a.at for a in list(self.answers.values())
                 if a.status == 200 and a.sent > moment]
        return min(times) - moment if times else None

    def refused_unavailable(self) -> tuple[int, float]:
        """How many calls were answered 503, and over how long (first sent to last
        answered)."""
        out = [a for a in list(self.answers.values()) if a.status == 503]
        if not out:
            return 0, 0.0
        return len(out), max(a.at for a in out) - min(a.sent for a in out)

    def statuses(self) -> Counter[int]:
        return Counter(a.status for a in self.answers.values())

    def codes(self) -> Counter[str | None]:
        return Counter(a.code for a in self.answers.values() if a.status != 200)


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               detail: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f"\nwhat there was: {detail()}" if detail else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Row:
    request_id: str
    decision: str
    status: int | None
    settlement: str
    cost: int
    worker: str | None


def ledger(dsn: str, agent: str) -> list[Row]:
    """The agent's ledger rows, read from PostgreSQL itself."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT request_id, decision, status, settlement, cost, worker FROM ledger "
            "WHERE agent = %s ORDER BY seq", (agent,)).fetchall()
    return [Row(*r) for r in rows]


def settled_down(replicas: Replicas, scope: str, dsn: str, agent: str) -> float:
    """Wait until no replica holds money for `scope` and no ledger row is pending; returns
    how long that took."""
    started = time.monotonic()
    seen: list[object] = []

    def quiet() -> bool:
        try:
            budgets = [micros(r.budget(scope)["reserved_usd"]) for r in replicas if r.running]
            pending = [r for r in ledger(dsn, agent) if r.settlement == "pending"]
        except (httpx.HTTPError, psycopg.Error, AssertionError) as exc:
            seen[:] = [exc]
            return False
        seen[:] = [budgets, pending[:5]]
        return not any(budgets) and not pending

    wait_until(quiet, SETTLE_TIMEOUT_S, "nothing held and nothing pending", lambda: seen)
    return time.monotonic() - started


def worker_pid(worker: str | None) -> int | None:
    """The process id in a worker's name (w_<host>_<pid>_<hex>)."""
    parts = (worker or "").rsplit("_", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def check_books(replicas: Replicas, provider: Provider, load: Load, scope: str, dsn: str,
                agent: str, cap: int, *, unsettled_from: set[int] | None = None) -> int:
    """What every fault must leave true; returns the spend.

    - calls the provider served = ledger rows charged = the counters, on every replica;
    - no cap passed; nothing held or pending;
    - no call answered 503 was served or charged; every 200 was served and settled;
    - no row charged in full (`unsettled`), but those of the worker processes in
      `unsettled_from` (a killed replica's cut calls)."""
    rows = ledger(dsn, agent)
    served = sum(provider.served.values())
    charged = [r for r in rows if r.cost]
    spent = sum(r.cost for r in rows)
    assert not [r for r in rows if r.settlement == "pending"]
    assert {r.cost for r in charged} <= {PER_CALL}, sorted({r.cost for r in charged})
    assert len(charged) == served, (len(charged), served)
    assert spent == served * PER_CALL
    for replica in replicas:
        if replica.running:
            budget = replica.budget(scope)
            assert (micros(budget["spent_usd"]), micros(budget["reserved_usd"])) == (
                spent, 0), replica.name
    assert spent <= cap, f"spent {spent} micro-USD over a {cap} cap"
    by_id = {r.request_id: r for r in rows}
    late: list[str] = []
    for marker, answer in load.answers.items():
        if answer.status == 503:
            assert provider.served[marker] == 0, f"a call answered 503 was served: {answer}"
            row = by_id.get(answer.request_id)
            assert row is None or row.cost == 0, f"a call answered 503 was charged: {row}"
        elif answer.status == 200:
            assert provider.served[marker] == 1, answer
            row = by_id[answer.request_id]
            if row.settlement == "unsettled":
                # a served call whose settlement met the fault may still be reaped before it
                # lands (rare under load); charged its reservation, exactly its cost here,
                # and reported in the summary rather than hidden
                late.append(row.request_id)
                assert row.cost == PER_CALL, row
                continue
            assert (row.settlement, row.cost) == ("settled", PER_CALL), row
    assert max(provider.served.values(), default=0) <= 1, "a call served twice"
    cut = [r for r in rows if r.settlement == "unsettled" and r.request_id not in late]
    killed = unsettled_from or set()
    assert all(worker_pid(r.worker) in killed for r in cut), [
        r for r in cut if worker_pid(r.worker) not in killed]
    if late:
        print(f"{len(late)} served call(s) reaped as unsettled before their settlement "
              f"landed: {late}")
    return spent
