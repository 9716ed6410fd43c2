"""An answer that reports more than was held is charged what the provider reported: the
answer's cost header, the audit row, the metric and the webhook all show the overrun."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .fakes import CHAT, SSE_HEADERS, Outlay, Reply, openai_answer, openai_stream


async def overrun_metric(outlay: Outlay) -> dict[tuple[str, str], float]:
    resp = await outlay.client.get("/metrics")
    found = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            if s.name == "outlay_settlement_overrun_usd_total":
                found[(s.labels["vendor"], s.labels["model"])] = s.value
    return found


async def webhook_events(outlay: Outlay) -> list[dict[str, Any]]:
    await outlay.store.audit(None, 1)
    jobs = await outlay.store.claim_deliveries(1_000, 0)
    return [json.loads(job.body) for job in jobs]


async def test_an_answer_above_its_reservation_is_charged_in_full(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.store.add_webhook("http://127.0.0.1:9/hook", ["*"])
    await outlay.set_policy("agent:agent-a", {"budgets": [
        {"usd": "0.0002", "period": "day", "mode": "hard"}]})
    # "hi" and max_tokens 10 reserve 61 micro-USD; a stream bills 60 + 2 x 20 = 100 (within
    # the cap), then a whole answer 150 + 2 x 20 = 190, which takes spend past the cap
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream(usage=(60, 20))))
    first = await outlay.chat(key["key"], {**CHAT, "stream": True,
                                           "stream_options": {"include_usage": True}})
    assert first.status == 200
    await first.read()
    await outlay.store.wait_settled(first.headers["X-Outlay-Request-Id"])
    outlay.upstream.script(Reply(body=openai_answer(prompt=150, completion=20)))
    second = await outlay.chat(key["key"])
    assert second.headers["X-Outlay-Cost-USD"] == "0.00019"

    entries = {e["request_id"]: e for e in await outlay.audit()}
    one = entries[first.headers["X-Outlay-Request-Id"]]
    two = entries[second.headers["X-Outlay-Request-Id"]]
    assert (one["reserved_usd"], one["cost_usd"], one["overrun_usd"]) == (
        "0.000061", "0.0001", "0.000039")
    assert (two["reserved_usd"], two["cost_usd"], two["overrun_usd"]) == (
        "0.000061", "0.00019", "0.000129")
    # spend is the sum of what the provider reported, past the cap
    assert (await outlay.budget("agent:agent-a"))["spent_usd"] == "0.00029"
    assert await overrun_metric(outlay) == {("openai", "test-gpt"): 0.000168}
    exceeded = [e for e in await webhook_events(outlay) if e["type"] == "budget.exceeded"]
    assert [(e["data"]["request_id"], e["data"]["overrun_usd"], e["data"]["spent_usd"],
             e["data"]["mode"]) for e in exceeded] == [
        (second.headers["X-Outlay-Request-Id"], "0.000129", "0.00029", "hard")]
