"""Degrade instead of refuse: a budget with `on_exceeded: {downgrade_to: …}` sends a call it
would refuse to a cheaper model that fits; the provider sees that model, the answer and the
ledger say so, and when even that does not fit, 402."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .fakes import Outlay, Reply, openai_answer


def chat(model: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}]}


async def test_a_call_the_budget_would_refuse_goes_to_the_cheaper_model(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [
        {"usd": "0.0002", "period": "day",
         "on_exceeded": {"downgrade_to": ["gpt-4o-mini"]}}]})
    outlay.upstream.default = Reply(body=openai_answer(model="gpt-4o-mini"))
    resp = await outlay.chat(key["key"], chat("gpt-4o", 100))
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Outlay-Downgraded"] == "gpt-4o -> gpt-4o-mini"
    sent = json.loads(outlay.upstream.requests[-1].body)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["max_tokens"] == 100
    [entry] = await outlay.audit()
    assert (entry["decision"], entry["code"], entry["model"]) == (
        "allowed", "downgraded", "gpt-4o-mini")
    metrics = await (await outlay.client.get("/metrics")).text()
    assert next(row for row in metrics.splitlines() if 'code="downgraded"' in row).endswith(" 1")
    # a call that fits is sent as asked
    resp = await outlay.chat(key["key"], chat("gpt-4o", 1))
    assert resp.status == 200
    assert "X-Outlay-Downgraded" not in resp.headers
    assert json.loads(outlay.upstream.requests[-1].body)["model"] == "gpt-4o"
    # when even the cheaper model does not fit: refused, nothing forwarded
    sent_before = len(outlay.upstream.requests)
    resp = await outlay.chat(key["key"], chat("gpt-4o", 4000))
    assert resp.status == 402
    assert (await resp.json())["error"]["code"] == "budget_exceeded"
    assert len(outlay.upstream.requests) == sent_before
    latest = (await outlay.audit())[0]
    assert (latest["decision"], latest["code"], latest["model"]) == (
        "refused", "budget_exceeded", "gpt-4o")


async def test_a_cheaper_model_is_tried_in_order_and_never_a_dearer_one(
        outlay: Outlay, key: dict[str, Any]) -> None:
    # the call asks for gpt-4o-mini already: gpt-4.1-nano is cheaper, gpt-4o-mini not
    await outlay.set_policy("agent:agent-a", {"budgets": [
        {"usd": "0.000022", "period": "day",
         "on_exceeded": {"downgrade_to": ["gpt-4o-mini", "gpt-4.1-nano"]}}]})
    resp = await outlay.chat(key["key"], chat("gpt-4o-mini", 40))
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Outlay-Downgraded"] == "gpt-4o-mini -> gpt-4.1-nano"


@pytest.mark.parametrize(("on_exceeded", "words"), [
    ({"downgrade_to": "no-such-model"}, "no price is known for 'no-such-model'"),
    ({"downgrade_to": ["gpt-4o-mini", "gpt-4o"]}, "'gpt-4o' is dearer than 'gpt-4o-mini'"),
    ({"downgrade_to": []}, "non-empty list"),
    ({"downgrade": "gpt-4o-mini"}, "on_exceeded must be"),
])
async def test_bad_downgrades_are_refused_and_nothing_stored(
        outlay: Outlay, on_exceeded: dict[str, Any], words: str) -> None:
    answer = await outlay.admin("PUT", "policies/agent:agent-a", {
        "budgets": [{"usd": 1, "on_exceeded": on_exceeded}]}, expect=400)
    assert words in answer["error"]["message"]
    assert "budgets[0].on_exceeded" in answer["error"]["message"]
    answer = await outlay.admin("PUT", "policies/agent:agent-a", {"budgets": [
        {"usd": 1, "mode": "soft", "on_exceeded": {"downgrade_to": "gpt-4o-mini"}}]},
        expect=400)
    assert "enforced hard budget only" in answer["error"]["message"]
    assert (await outlay.admin("GET", "policies"))["policies"] == []
