"""GET /metrics of a real `outlay serve` with several workers: whichever worker a scrape
reaches, it answers for all of them, and a worker's counts outlive the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import Gateway, Launch, unique

pytestmark = pytest.mark.e2e

CALLS = 16
ALLOWED = ("outlay_decisions_total", (("code", ""), ("decision", "allowed"),
                                      ("route", "openai.chat"), ("vendor", "openai")))


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # a new connection each time, so that scrapes reach different workers
    response = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def settle_on(gateway: Gateway, want: float, workers: int, deadline_s: float = 10.0) -> None:
    """Scrape until eight scrapes in a row show `want` allowed calls from `workers` workers
    (each worker leaves its counts for the others about once a second)."""
    deadline = time.monotonic() + deadline_s
    agreeing, last = 0, None
    while agreeing < 8:
        assert time.monotonic() < deadline, f"scrapes never agreed; last: {last}"
        got = scrape(gateway)
        last = (got.get(ALLOWED), got[("outlay_workers", ())])
        agreeing = agreeing + 1 if last == (want, workers) else 0
        if agreeing == 0:
            time.sleep(0.2)


async def call_concurrently(gateway: Gateway, key: str) -> None:
    async def one(client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "max_tokens": 5,
                  "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200, response.text

    limits = httpx.Limits(max_connections=CALLS, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client) for _ in range(CALLS)))


def test_every_worker_answers_for_all_and_a_dead_workers_counts_stay(launch: Launch) -> None:
    gateway = launch({"simulated": {"latency_ms": 100}}, workers=2, name="metrics")
    key = gateway.mint_key(unique("metrics"))["key"]
    asyncio.run(call_concurrently(gateway, key))
    settle_on(gateway, CALLS, workers=2)
    got = scrape(gateway)
    assert got[("outlay_settlements_total", (("settlement", "settled"),
                                             ("vendor", "openai")))] == CALLS
    assert got[("outlay_spend_usd_total", (("model", "gpt-4o-mini"), ("vendor", "openai")))] > 0
    assert got[("outlay_request_duration_seconds_count", (("route", "openai.chat"),))] == CALLS
    assert got[("outlay_calls_in_flight", ())] == 0

    # a worker killed outright: the supervisor starts another; its counts stay in the sums
    victim = gateway.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim in gateway.worker_pids() or len(gateway.worker_pids()) < 2:
        assert time.monotonic() < deadline, "the supervisor did not replace the worker"
        time.sleep(0.1)
    settle_on(gateway, CALLS, workers=2)
