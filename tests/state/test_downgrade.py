"""Degrade instead of refuse on every store: a refusal by a budget with a downgrade list asks
for the cheaper models' prices (nothing written), then admits the call on the first that
fits, marks its row and announces budget.downgraded once per budget period."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest

from outlay.policy.decision import Call
from outlay.policy.errors import BudgetExceeded, DowngradeAsked
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore, Ticket

from .support import ticket


@pytest.fixture(autouse=True)
async def listener(store: StateStore) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", ["*"])  # type: ignore[attr-defined]


def dear(secret: str, priced: bool = True) -> Ticket:
    asked = ticket(secret, 5_000, model="dear")
    if not priced:
        return asked
    return replace(asked, downgrades={
        "cheap": Call("openai", "cheap", "cheap", cost_micros=400),
        "dearer": Call("openai", "dearer", "dearer", cost_micros=6_000)})


async def test_a_refused_call_is_admitted_on_the_cheaper_model(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": "0.001", "period": "day",
         "on_exceeded": {"downgrade_to": ["dearer", "cheap"]}}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    with pytest.raises(DowngradeAsked) as asked:
        await store.reserve(dear(secret, priced=False))
    assert asked.value.models == ("dearer", "cheap")
    assert await store.audit(None, 10) == []  # nothing written yet
    held = [await store.reserve(dear(secret)) for _ in range(2)]
    assert [h.downgraded_to for h in held] == ["cheap", "cheap"]
    assert [h.amount for h in held] == [400, 400]
    with pytest.raises(BudgetExceeded):  # 800 held: even the cheaper one does not fit
        await store.reserve(dear(secret))
    for h in held:
        assert await store.settle(Outcome(h.id, 200, cost_micros=400))
    rows = await store.audit(None, 10)
    assert [(r["decision"], r["code"], r["model"]) for r in rows] == [
        ("refused", "budget_exceeded", "dear"), ("allowed", "downgraded", "cheap"),
        ("allowed", "downgraded", "cheap")]
    jobs = await store.claim_deliveries(1_000, 0)  # type: ignore[attr-defined]
    kinds = Counter(json.loads(job.body)["type"] for job in jobs)
    assert kinds["budget.downgraded"] == 1  # coalesced per scope and period
    [event] = [json.loads(j.body) for j in jobs if json.loads(j.body)["type"]
               == "budget.downgraded"]
    assert (event["data"]["from_model"], event["data"]["to_model"]) == ("dear", "cheap")
    assert event["data"]["scope"] == "agent:bot"


async def test_a_call_that_fits_is_never_downgraded(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": 1, "period": "day", "on_exceeded": {"downgrade_to": ["cheap"]}}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    held = await store.reserve(dear(secret, priced=False))
    assert (held.downgraded_to, held.amount) == (None, 5_000)
