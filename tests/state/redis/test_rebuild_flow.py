"""Redis losing its data: money-out counters come back from the ledger apart from spend."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome
from outlay.state.redis.store import RedisStore

from ..support import Clock, ticket
from ..test_money_out import POLICY, lines, out
from .test_rebuild import empty_redis, open_redis_store

__all__ = ["open_redis_store"]  # the fixture, used here


async def test_money_out_and_spend_come_back_apart(
    open_redis_store: Callable[..., RedisStore], clock: Clock
) -> None:
    store = open_redis_store(clock)
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(POLICY))
    refund = await store.reserve(out(secret, 30_000))
    assert await store.settle(Outcome(refund.id, 200, cost_micros=30_000))
    payment = await store.reserve(ticket(secret, 15_000))
    assert await store.settle(Outcome(payment.id, 200, cost_micros=15_000))
    in_flight = await store.reserve(out(secret, 10_000))
    await empty_redis(store)

    payment = await store.reserve(ticket(secret, 1_000))  # rebuilt first, then decided
    assert lines(await store.usage("agent:bot")) == {"out": ("0.03", "0.01"),
                                                     "spend": ("0.015", "0.001")}
    with pytest.raises(BudgetExceeded) as caught:  # 30_000 + 10_000 held + 10_001 > 50_000
        await store.reserve(out(secret, 10_001))
    assert caught.value.details["flow"] == "out"
    assert await store.settle(Outcome(in_flight.id, 200, cost_micros=10_000))
    assert await store.settle(Outcome(payment.id, 200, cost_micros=1_000))
    assert lines(await store.usage("agent:bot")) == {"out": ("0.04", "0"),
                                                     "spend": ("0.016", "0")}
