"""The fault suite's means: an OpenAI-compatible provider on loopback that counts the calls
it serves (by the marker each call of the load carries, traffic.py), paced load over the
replicas, the books read straight from PostgreSQL, and the one check every fault must
leave true.

Every call asks the exact model (`harness.EXACT_MODEL`): reserved and charged the same
PER_CALL, so money and calls can be compared one for one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from aiohttp import web

from .harness import EXACT_MODEL, EXACT_PRICES, EXACT_TOKENS, micros
from .replicas import Replicas
from .traffic import Load, serve_in_thread, wait_until

PER_CALL = EXACT_TOKENS * EXACT_PRICES[EXACT_MODEL]["output"]  # micro-USD
LATENCY_S = 0.2  # the provider's: calls are in flight when a fault strikes
LANES = 8  # over the replicas, round-robin
PACE_S = 0.05  # a lane's wait between two calls
SETTLE_TIMEOUT_S = 25.0  # the reaper's 5 s, PostgreSQL reconnecting, and a margin


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
    """The provider on loopback, for as long as the generator is not closed."""
    found = Provider()
    app = web.Application()
    app[PROVIDER] = found
    app.router.add_post("/v1/chat/completions", _chat)
    with serve_in_thread(app) as found.url:
        yield found


def replica_config(provider: Provider) -> dict[str, Any]:
    return {"providers": {"openai": {"endpoints": [
        {"base_url": f"{provider.url}/v1", "api_key": "sk-fault-suite"}]}},
        "prices": EXACT_PRICES}


def paced_load(urls: list[str], key: str) -> Load:
    """LANES lanes over the replicas, each waiting PACE_S between two calls."""
    return Load(urls, key, {"model": EXACT_MODEL, "max_tokens": EXACT_TOKENS,
                            "messages": [{"role": "user", "content": "hi"}]},
                lanes=LANES, stagger_s=PACE_S / LANES, pace_s=PACE_S, backoff_s=PACE_S,
                timeout_s=15)


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
    for marker, answer in load.answers.items():
        if answer.status == 503:
            assert provider.served[marker] == 0, f"a call answered 503 was served: {answer}"
            row = by_id.get(answer.request_id)
            assert row is None or row.cost == 0, f"a call answered 503 was charged: {row}"
        elif answer.status == 200:
            assert provider.served[marker] == 1, answer
            row = by_id[answer.request_id]
            assert (row.settlement, row.cost) == ("settled", PER_CALL), row
    assert max(provider.served.values(), default=0) <= 1, "a call served twice"
    cut = [r for r in rows if r.settlement == "unsettled"]
    killed = unsettled_from or set()
    assert all(worker_pid(r.worker) in killed for r in cut), [
        r for r in cut if worker_pid(r.worker) not in killed]
    return spent
