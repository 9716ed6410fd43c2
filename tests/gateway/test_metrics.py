"""GET /metrics of a running gateway: every decision, settlement and answer of the calls it
served, in Prometheus' text format."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from outlay.state.base import StateError

from .fakes import (
    CHAT,
    SSE_HEADERS,
    WAIT_S,
    MakeOutlay,
    Outlay,
    Reply,
    openai_answer,
    openai_stream,
    read_at_least,
    read_rest,
)


async def eventually(condition: Callable[[], object]) -> None:
    for _ in range(int(WAIT_S / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"still not so after {WAIT_S} s")


async def scrape(outlay: Outlay) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await outlay.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def decisions(route: str, vendor: str, decision: str, code: str = ""
              ) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("outlay_decisions_total", (("code", code), ("decision", decision), ("route", route),
                                       ("vendor", vendor)))


async def test_decisions_settlements_and_durations_are_counted(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 0.0001}]})
    outlay.upstream.script(Reply(body=openai_answer(prompt=25, completion=5)))
    assert (await outlay.chat(key["key"])).status == 200  # 25 + 5 x 2 micro-USD
    assert (await outlay.chat(key["key"], {**CHAT, "max_tokens": 100})).status == 402
    resp = await outlay.client.post("/v1/chat/completions", data=b"{not json",
                                    headers={"Authorization": f"Bearer {key['key']}"})
    assert resp.status == 400
    assert (await outlay.chat("olk_nobody")).status == 401
    got = await scrape(outlay)
    assert got[decisions("openai.chat", "openai", "allowed")] == 1
    assert got[decisions("openai.chat", "openai", "refused", "budget_exceeded")] == 1
    assert got[decisions("openai.chat", "openai", "refused", "invalid_api_key")] == 1
    assert got[decisions("openai.chat", "openai", "invalid", "invalid_request")] == 1
    assert got[("outlay_spend_usd_total", (("model", "test-gpt"), ("vendor", "openai")))] \
        == 0.000035
    assert got[("outlay_settlements_total", (("settlement", "settled"),
                                             ("vendor", "openai")))] == 1
    assert got[("outlay_request_duration_seconds_count", (("route", "openai.chat"),))] == 4
    assert got[("outlay_calls_in_flight", ())] == 0


async def test_a_call_in_flight_shows(outlay: Outlay, key: dict[str, Any]) -> None:
    chunks = openai_stream()
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    assert await read_at_least(resp, len(chunks[0])) == chunks[0]
    assert (await scrape(outlay))[("outlay_calls_in_flight", ())] == 1
    outlay.upstream.release.set()
    async with asyncio.timeout(WAIT_S):
        await read_rest(resp)
    for _ in range(100):  # the handler finishes just after the last byte
        got = await scrape(outlay)
        if got[("outlay_calls_in_flight", ())] == 0:
            break
        await asyncio.sleep(0.01)
    assert got[("outlay_calls_in_flight", ())] == 0
    assert got[("outlay_settlements_total", (("settlement", "settled"),
                                             ("vendor", "openai")))] == 1


async def test_an_unknown_vendor_does_not_make_a_series_of_its_own(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    for name in ("made-up-1", "made-up-2"):
        resp = await outlay.client.post(f"/vendors/{name}/v1/x", json={},
                                        headers={"Authorization": f"Bearer {key['key']}"})
        assert resp.status == 400
    got = await scrape(outlay)
    assert got[decisions("vendor.unknown", "unknown", "invalid", "invalid_request")] == 2
    assert not any("made-up" in str(labels) for _, labels in got)
    assert got[("outlay_request_duration_seconds_count", (("route", "vendor.unknown"),))] == 2


async def test_a_provider_refusal_voids_and_counts_no_spend(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    outlay.upstream.script(Reply(status=400, body=b'{"error": {"message": "no"}}'))
    assert (await outlay.chat(key["key"])).status == 400
    got = await scrape(outlay)
    assert got[("outlay_settlements_total", (("settlement", "void"), ("vendor", "openai")))] == 1
    assert not any(name == "outlay_spend_usd_total" for name, _ in got)


async def test_budgets_are_exported_but_not_keys(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 10, "period": "day"}]})
    await outlay.set_policy(f"key:{key['id']}", {"budgets": [{"usd": 1}]})
    outlay.upstream.script(Reply(body=openai_answer(prompt=25, completion=5)))
    assert (await outlay.chat(key["key"])).status == 200
    await outlay.store.wait_settled((await outlay.audit(limit=1))[0]["request_id"])
    got = await scrape(outlay)
    agent = (("flow", "spend"), ("mode", "hard"), ("period", "day"),
             ("scope", "agent:agent-a"))
    assert got[("outlay_budget_cap_usd", agent)] == 10
    assert got[("outlay_budget_spent_usd", agent)] == 0.000035
    assert got[("outlay_budget_reserved_usd", agent)] == 0
    assert not any("key:" in str(labels) for _, labels in got)
    assert got[("outlay_state_up", ())] == 1


async def test_a_money_out_budget_is_exported_apart_from_spend(outlay: Outlay) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [
        {"usd": 10, "period": "day"}, {"usd": 50, "period": "day", "flow": "out"}]})
    got = await scrape(outlay)
    labels = (("mode", "hard"), ("period", "day"), ("scope", "agent:agent-a"))
    assert got[("outlay_budget_cap_usd", (("flow", "out"), *labels))] == 50
    assert got[("outlay_budget_cap_usd", (("flow", "spend"), *labels))] == 10
    assert got[("outlay_budget_spent_usd", (("flow", "out"), *labels))] == 0


async def test_a_failing_store_still_answers_the_counts(
    outlay: Outlay, key: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await outlay.chat(key["key"])).status == 200

    async def broken() -> list[Any]:
        raise StateError("the disk is gone")

    monkeypatch.setattr(outlay.store, "budgets", broken)
    got = await scrape(outlay)
    assert got[("outlay_state_up", ())] == 0
    assert got[decisions("openai.chat", "openai", "allowed")] == 1


METRICS_TOKEN = "scrape-token-0123456789"


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong-token-0123456789", f"Basic {METRICS_TOKEN}", METRICS_TOKEN,
    f"Bearer {METRICS_TOKEN}x", "Bearer caf\u00e9",
], ids=["none", "wrong", "other scheme", "no scheme", "longer", "not ASCII"])
async def test_a_metrics_token_is_required_when_set(
    make_outlay: MakeOutlay, authorization: str | None,
) -> None:
    outlay = await make_outlay(metrics_token=METRICS_TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = await outlay.client.get("/metrics", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert (await resp.json())["error"]["code"] == "invalid_metrics_token"
    assert "outlay_" not in await resp.text()


async def test_the_metrics_token_lets_a_scrape_through(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(metrics_token=METRICS_TOKEN)
    for scheme in ("Bearer", "bearer"):
        resp = await outlay.client.get(
            "/metrics", headers={"Authorization": f"{scheme} {METRICS_TOKEN}"})
        assert resp.status == 200
        assert "outlay_calls_in_flight" in await resp.text()


async def test_a_settlement_the_store_failed_to_write_waits_then_lands_and_is_counted(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 10, "period": "day"}]})
    chunks = openai_stream(usage=(25, 5))  # 25 x 1 + 5 x 2 micro-USD
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True,
                                          "stream_options": {"include_usage": True}})
    assert await read_at_least(resp, len(chunks[0])) == chunks[0]
    # reserved; now another process holds the write lock past this worker's patience
    outlay.store.conn.execute("PRAGMA busy_timeout = 20")
    other = sqlite3.connect(outlay.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        outlay.upstream.release.set()
        async with asyncio.timeout(WAIT_S):
            await read_rest(resp)
        await eventually(lambda: outlay.store.settlement_retries().waiting)
        got = await scrape(outlay)
        assert got[("outlay_settlements_waiting", ())] == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    # applied again, backing off, until it lands
    await eventually(lambda: not outlay.store.settlement_retries().waiting)
    got = await scrape(outlay)
    assert got[("outlay_settlements_waiting", ())] == 0
    assert got[("outlay_settlement_retries_total", ())] >= 1
    assert got[("outlay_settlements_abandoned_total", ())] == 0
    budget = await outlay.budget("agent:agent-a")
    assert (budget["spent_usd"], budget["reserved_usd"]) == ("0.000035", "0")
