"""Rate windows and parallelism as the store keeps them between requests."""

from __future__ import annotations

import pytest

from outlay.policy.errors import BudgetExceeded, RateLimited
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore

from .conftest import OpenStore
from .support import Clock, ticket


async def new_key(store: StateStore, policy: dict[str, object]) -> str:
    _, secret = await store.create_key(NewKey(agent="bot", policy=parse_policy(policy)))
    return secret


async def test_rpm_admits_exactly_30_then_waits(store: StateStore, clock: Clock) -> None:
    secret = await new_key(store, {"rpm": 30})
    clock.advance(0.25)  # a quarter into a one-second bucket
    for i in range(30):
        reservation = await store.reserve(ticket(secret, 0))
        assert reservation.limits.requests_remaining == 29 - i
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(secret, 0))
    error = caught.value
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert error.details["limit"] == 30
    assert error.details["scope"].startswith("key:")
    # the burst's bucket stops counting a minute after it started, 59.75 s from now: never
    # more than the window, and the slot is free when Retry-After says
    assert error.details["retry_after"] == 60
    clock.advance(59.749)
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret, 0))
    clock.advance(0.001)
    await store.reserve(ticket(secret, 0))
    rows = await store.audit(None, 100)
    assert [r["decision"] for r in rows].count("allowed") == 31
    assert [r["code"] for r in rows].count("rate_limit_exceeded") == 2


async def test_refused_requests_do_not_use_the_window(store: StateStore) -> None:
    secret = await new_key(store, {"rpm": 2, "budgets": [{"usd": 0.001}]})
    for _ in range(5):
        with pytest.raises(BudgetExceeded):
            await store.reserve(ticket(secret, 2_000))
    await store.reserve(ticket(secret, 0))
    await store.reserve(ticket(secret, 0))


async def test_workers_share_one_window(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    secret = await new_key(store, {"rpm": 30})
    workers = [store, await open_store(clock), await open_store(clock)]
    admitted = 0
    for i in range(45):
        try:
            await workers[i % 3].reserve(ticket(secret, 0))
            admitted += 1
        except RateLimited:
            pass
        clock.advance(0.5)  # 45 requests over 22.5 s: all in one rolling minute
    assert admitted == 30


async def test_max_parallel_counts_calls_in_flight(store: StateStore) -> None:
    secret = await new_key(store, {"max_parallel": 2})
    first = await store.reserve(ticket(secret))
    second = await store.reserve(ticket(secret))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(secret))
    assert caught.value.code == "concurrency_limit_exceeded"
    assert caught.value.details["limit"] == 2
    assert await store.settle(Outcome(first.id, 200, cost_micros=5))
    third = await store.reserve(ticket(secret))
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret))
    assert await store.settle(Outcome(second.id, 400, settled="void"))
    assert await store.settle(Outcome(third.id, 0, settled="unsettled"))
    assert not await store.settle(Outcome(third.id, 0, settled="unsettled"))  # freed once
    await store.reserve(ticket(secret))
    await store.reserve(ticket(secret))
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret))


async def test_max_parallel_on_a_shared_scope(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"max_parallel": 1}))
    _, one = await store.create_key(NewKey(agent="bot"))
    _, two = await store.create_key(NewKey(agent="bot"))
    held = await store.reserve(ticket(one))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(two))
    assert caught.value.details["scope"] == "agent:bot"
    await store.settle(Outcome(held.id, 200))
    await store.reserve(ticket(two))


async def test_tpm_settles_to_the_tokens_used(store: StateStore) -> None:
    secret = await new_key(store, {"tpm": 1_000})
    held = await store.reserve(ticket(secret, tokens=600))
    assert held.limits.tokens_remaining == 400
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(secret, tokens=500))
    assert caught.value.code == "token_rate_limit_exceeded"
    assert await store.settle(Outcome(held.id, 200, cost_micros=10, tokens=100))
    await store.reserve(ticket(secret, tokens=900))  # 100 + 900
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret, tokens=1))


async def test_tpm_void_returns_tokens_and_unsettled_keeps_them(store: StateStore) -> None:
    secret = await new_key(store, {"tpm": 1_000})
    voided = await store.reserve(ticket(secret, tokens=700))
    await store.settle(Outcome(voided.id, 400, settled="void"))
    lost = await store.reserve(ticket(secret, tokens=700))
    await store.settle(Outcome(lost.id, 0, settled="unsettled"))
    await store.reserve(ticket(secret, tokens=300))
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret, tokens=1))


async def test_hourly_and_daily_windows(store: StateStore, clock: Clock) -> None:
    secret = await new_key(store, {"rph": 3, "rpd": 4})
    for _ in range(3):
        await store.reserve(ticket(secret, 0))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(secret, 0))
    assert caught.value.code == "hourly_rate_limit_exceeded"
    clock.advance(3_600 + 60)
    await store.reserve(ticket(secret, 0))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(secret, 0))
    assert caught.value.code == "daily_rate_limit_exceeded"
    assert caught.value.details["retry_after"] > 20 * 3_600


@pytest.mark.parametrize("into_bucket", [0.0, 0.001, 0.5, 0.999])
async def test_a_client_that_waits_exactly_retry_after_is_admitted(
        store: StateStore, clock: Clock, into_bucket: float) -> None:
    # the worst case for a bucketed window: the slot was taken in the very bucket of the
    # refusal; Retry-After (whole seconds) is still within the window, and then it is free
    secret = await new_key(store, {"rpm": 2, "rph": 8})
    clock.advance(into_bucket)
    for _ in range(3):  # three rounds: each refusal's wait is honoured, and is enough
        await store.reserve(ticket(secret, 0))
        await store.reserve(ticket(secret, 0))
        with pytest.raises(RateLimited) as caught:
            await store.reserve(ticket(secret, 0))
        retry_after = caught.value.details["retry_after"]
        assert 1 <= retry_after <= 60
        assert caught.value.headers["Retry-After"] == str(retry_after)
        clock.advance(retry_after)
    # the hourly window's own refusal says at most an hour
    await store.reserve(ticket(secret, 0))
    await store.reserve(ticket(secret, 0))
    clock.advance(60)
    with pytest.raises(RateLimited) as caught:
        await store.reserve(ticket(secret, 0))
    assert caught.value.code == "hourly_rate_limit_exceeded"
    assert 3_000 < caught.value.details["retry_after"] <= 3_600
    clock.advance(caught.value.details["retry_after"])
    await store.reserve(ticket(secret, 0))
