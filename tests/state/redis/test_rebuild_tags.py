"""Redis losing its data keeps every tag value's bucket: the spend, holds and windows of
each value under a `tag:<name>=*` policy, and the values it tracks, come back from the
ledger before the next decision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from outlay.policy.errors import BudgetExceeded, RateLimited
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, Ticket
from outlay.state.open import store_from_url
from outlay.state.redis.store import RedisStore

from ..support import Clock, ticket
from .test_rebuild import empty_redis


@pytest.fixture
async def redis_store(redis_url: str, postgres_dsn: str, clock: Clock
                      ) -> AsyncIterator[RedisStore]:
    store = store_from_url(redis_url, database=postgres_dsn, clock=clock,
                           rebuild_grace_s=0.0)
    assert isinstance(store, RedisStore)
    await store.open()
    yield store
    await store.close()


def tagged(secret: str, cost: int, customer: str) -> Ticket:
    return replace(ticket(secret, cost), tags={"customer": customer})


async def test_each_value_s_spend_holds_and_tracking_come_back(
        redis_store: RedisStore) -> None:
    store = redis_store
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("tag:customer=*", parse_policy(
        {"rpm": 3, "max_values": 2, "budgets": [{"usd": "0.01", "period": "day"}]}))
    done = await store.reserve(tagged(secret, 3_000, "acme"))
    assert await store.settle(Outcome(done.id, 200, cost_micros=3_000))
    in_flight = await store.reserve(tagged(secret, 4_000, "acme"))
    await store.reserve(tagged(secret, 1_000, "beta"))
    await empty_redis(store)

    with pytest.raises(BudgetExceeded) as refused:  # 3_000 spent + 4_000 held + 4_000
        await store.reserve(tagged(secret, 4_000, "acme"))
    assert refused.value.details["scope"] == "tag:customer=acme"
    usage = await store.usage("tag:customer=*")
    assert sorted(v["value"] for v in usage["values"]) == ["acme", "beta"]
    with pytest.raises(RateLimited) as many:  # still two values tracked: a third is refused
        await store.reserve(tagged(secret, 1, "gamma"))
    assert many.value.code == "too_many_tag_values"
    await store.reserve(tagged(secret, 1, "acme"))  # the 3rd call of acme this minute
    with pytest.raises(RateLimited) as rate:
        await store.reserve(tagged(secret, 1, "acme"))
    assert rate.value.code == "rate_limit_exceeded"
    # the call in flight when Redis emptied releases its hold on its value's counter
    assert await store.settle(Outcome(in_flight.id, 200, cost_micros=2_000))
    [line] = [v for v in (await store.usage("tag:customer=*"))["values"]
              if v["value"] == "acme"]
    assert (line["budgets"][0]["spent_usd"], line["budgets"][0]["reserved_usd"]) == (
        "0.005", "0.000001")
