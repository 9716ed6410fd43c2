"""A settlement queued without waiting (the gateway's, once an answer is sent): applied
once, and counted by the store's own reads at once."""

from __future__ import annotations

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore

from .conftest import OpenStore
from .support import Clock, budget_line, ledger_cost, ticket


async def test_a_queued_settlement_counts_in_the_stores_next_read(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1}]}))
    held = await store.reserve(ticket(secret, 5_000))
    assert store.queue_settlement(Outcome(held.id, 200, cost_micros=1_234))
    line = await budget_line(store, "agent:bot", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.001234", "0")
    (row,) = [r for r in await store.audit(None, 10) if r["request_id"] == held.id]
    assert (row["settlement"], row["cost_usd"]) == ("settled", "0.001234")


async def test_a_queued_settlement_applies_once(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    held = await store.reserve(ticket(secret, 5_000))
    assert store.queue_settlement(Outcome(held.id, 200, cost_micros=1_000))
    assert store.queue_settlement(Outcome(held.id, 200, cost_micros=4_000))
    await store.audit(None, 10)
    assert not await store.settle(Outcome(held.id, 200, cost_micros=2_000))
    assert await ledger_cost(store) == 1_000
