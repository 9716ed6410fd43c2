"""Shadow mode on every store: a policy or one budget with `enforce: shadow` is counted and
its breaches reported (the audit's code, `*.shadow` events) as if enforced; calls pass."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore

from .support import budget_line, ticket


@pytest.fixture(autouse=True)
async def listener(store: StateStore) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", ["*"])  # type: ignore[attr-defined]


async def events(store: StateStore) -> list[dict[str, object]]:
    await store.audit(None, 1)
    jobs = await store.claim_deliveries(1_000, 0)  # type: ignore[attr-defined]
    return [json.loads(job.body) for job in jobs]


async def test_a_shadow_rpm_of_one_lets_ten_calls_through_and_records_nine(
        store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"rpm": 1, "enforce": "shadow"}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    for _ in range(10):
        held = await store.reserve(ticket(secret, 1_000))
        assert held.shadowed in ((), ("rate_limit_exceeded",))
        assert await store.settle(Outcome(held.id, 200, cost_micros=1_000))
    rows = await store.audit(None, 100)
    assert [r["decision"] for r in rows] == ["allowed"] * 10
    assert Counter(r["code"] for r in rows) == {"shadow_refusal": 9, None: 1}
    assert (await store.usage("agent:bot"))["windows"][0]["used"] == 10  # counted
    shadow = [e for e in await events(store) if e["type"] == "agent.rate_limited.shadow"]
    assert len(shadow) == 1  # coalesced per key and minute, like the enforced event
    assert shadow[0]["data"]["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert not [e for e in await events(store) if e["type"] == "agent.rate_limited"]


async def test_one_shadow_budget_beside_an_enforced_one(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": "0.002", "period": "day", "enforce": "shadow"},
        {"usd": "0.005", "period": "month"}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    codes = []
    for _ in range(5):
        held = await store.reserve(ticket(secret, 1_000))
        codes.append(held.shadowed)
        # the headers speak of the cap that refuses
        assert held.limits.budget_cap == 5_000
        assert await store.settle(Outcome(held.id, 200, cost_micros=1_000))
    assert codes == [(), (), ("budget_exceeded",), ("budget_exceeded",), ("budget_exceeded",)]
    with pytest.raises(BudgetExceeded) as refused:  # the enforced one still refuses
        await store.reserve(ticket(secret, 1_000))
    assert refused.value.details["period"] == "month"
    assert (await budget_line(store, "agent:bot", "day"))["spent_usd"] == "0.005"
    kinds = Counter(str(e["type"]) for e in await events(store))
    assert kinds["budget.exceeded.shadow"] == 1
    assert kinds["budget.exceeded"] == 1
    rows = await store.audit(None, 100)
    assert Counter(r["code"] for r in rows) == {
        "shadow_refusal": 3, None: 2, "budget_exceeded": 1}


async def test_a_shadow_budget_neither_holds_a_call_nor_refuses_an_unpriced_one(
        store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": "0.001", "period": "day", "enforce": "shadow"}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    first = await store.reserve(ticket(secret, 900))
    second = await store.reserve(ticket(secret, 900))  # over beside the first: not held
    assert second.shadowed == ("budget_exceeded",)
    await store.reserve(ticket(secret, None, model="unknown"))  # no price: still passes
    assert await store.settle(Outcome(first.id, 200, cost_micros=900))
