"""A settlement above its reservation charges the bill: the ledger, the budgets and the audit
row show it, and a hard budget it takes past its cap is announced, on every backend."""

from __future__ import annotations

import json

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore, charged, overrun

from .support import budget_line, ledger_cost, ticket


async def events(store: StateStore) -> list[dict[str, object]]:
    await store.audit(None, 1)  # reading the ledger brings every decision's writes in
    jobs = await store.claim_deliveries(1_000, 0)  # type: ignore[attr-defined]
    return [json.loads(job.body) for job in jobs]


def test_what_a_settlement_charges() -> None:
    assert (charged("settled", 9, 5), overrun("settled", 9, 5)) == (9, 4)
    assert (charged("settled", 3, 5), overrun("settled", 3, 5)) == (3, 0)
    assert (charged("unsettled", 9, 5), overrun("unsettled", 9, 5)) == (5, 0)
    assert (charged("void", 9, 5), overrun("void", 9, 5)) == (0, 0)
    # a call that held nothing (free, a replay, a read) is charged nothing
    assert (charged("settled", 9, 0), overrun("settled", 9, 0)) == (0, 0)


async def test_an_overrun_is_charged_and_marked_in_the_audit(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1, "period": "day"}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    held = await store.reserve(ticket(secret, 30_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=465_000))
    line = await budget_line(store, "agent:bot", "day")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.465", "0")
    assert await ledger_cost(store) == 465_000
    row = (await store.audit(None, 1))[0]
    assert (row["reserved_usd"], row["cost_usd"], row["overrun_usd"], row["settlement"]) == (
        "0.03", "0.465", "0.435", "settled")


async def test_a_settlement_within_its_reservation_is_no_overrun(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    held = await store.reserve(ticket(secret, 30_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=30_000))
    assert (await store.audit(None, 1))[0]["overrun_usd"] is None


async def test_an_overrun_past_a_hard_cap_raises_budget_exceeded(store: StateStore) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", ["*"])  # type: ignore[attr-defined]
    # hard budgets with no warn_at: a settlement within its hold raises nothing
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": 1, "period": "day", "mode": "hard"}]}))
    record, secret = await store.create_key(NewKey(agent="bot"))
    within = await store.reserve(ticket(secret, 500_000))
    assert await store.settle(Outcome(within.id, 200, cost_micros=400_000))
    assert await events(store) == []
    held = await store.reserve(ticket(secret, 300_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=1_920_000))
    (event,) = await events(store)
    assert event["type"] == "budget.exceeded"
    data = event["data"]
    assert isinstance(data, dict)
    assert (data["scope"], data["mode"], data["spent_usd"], data["cap_usd"],
            data["request_id"], data["overrun_usd"], data["key_id"]) == (
        "agent:bot", "hard", "2.32", "1", held.id, "1.62", record.id)
