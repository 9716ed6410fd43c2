"""The budgets every backend reports for monitoring: each scope's but keys', in the current
period, with what is settled and what is held."""

from __future__ import annotations

from outlay.policy.model import parse_policy
from outlay.state.base import BudgetLine, NewKey, Outcome, StateStore

from .support import Clock, ticket


async def test_budgets_of_every_scope_but_keys(store: StateStore, clock: Clock) -> None:
    await store.create_agent("bot", "fleet")
    record, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": 1, "period": "day"}, {"usd": 5, "period": "month", "mode": "soft"}]}))
    await store.put_policy("group:fleet", parse_policy({"budgets": [{"usd": 10}]}))
    await store.put_policy("global", parse_policy({"rpm": 100}))  # no budget: no line
    await store.put_policy(f"key:{record.id}", parse_policy({"budgets": [{"usd": 0.5}]}))
    settled = await store.reserve(ticket(secret, 3_000))
    await store.reserve(ticket(secret, 2_000))  # still in flight
    assert await store.settle(Outcome(settled.id, 200, cost_micros=1_000))
    assert await store.budgets() == [
        BudgetLine("agent:bot", "day", "hard", 1_000_000, 1_000, 2_000),
        BudgetLine("agent:bot", "month", "soft", 5_000_000, 1_000, 2_000),
        BudgetLine("group:fleet", "month", "hard", 10_000_000, 1_000, 2_000),
    ]


async def test_a_new_period_starts_at_zero(store: StateStore, clock: Clock) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1, "period": "hour"}]}))
    held = await store.reserve(ticket(secret, 3_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=3_000))
    clock.advance(3600)
    assert await store.budgets() == [BudgetLine("agent:bot", "hour", "hard", 1_000_000, 0, 0)]


async def test_no_policies_no_lines(store: StateStore) -> None:
    assert await store.budgets() == []
