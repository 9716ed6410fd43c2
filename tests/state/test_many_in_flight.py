"""Hundreds of calls in flight at once on one store (one gateway worker): every one is
decided and settled; none is failed by the store's own plumbing (a connection pool too small
for the calls in flight)."""

from __future__ import annotations

import asyncio

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, Reservation, StateStore

from .support import budget_line, ticket

IN_FLIGHT = 400


async def test_hundreds_of_calls_in_flight_are_all_decided_and_settled(
        store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 100}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))

    async def call() -> bool:
        held = await store.reserve(ticket(secret, 2_000))
        assert isinstance(held, Reservation)
        await asyncio.sleep(0.01)  # the upstream's answer
        return await store.settle(Outcome(held.id, 200, cost_micros=1_000))

    results = await asyncio.gather(*(call() for _ in range(IN_FLIGHT)), return_exceptions=True)
    failed = [r for r in results if r is not True]
    assert not failed, failed[:3]
    line = await budget_line(store, "agent:bot", "month")
    assert line["spent_usd"] == str(IN_FLIGHT * 1_000 / 1_000_000).rstrip("0").rstrip(".")
    assert line["reserved_usd"] == "0"
