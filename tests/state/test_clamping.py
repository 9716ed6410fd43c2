"""Clamping in every backend: a call whose maximum output Outlay sets is admitted with a lower
maximum when that fits the hard budgets (`clamp_max_tokens`), inside the decision's atomic
step, so concurrent calls still never reserve past a cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from outlay.policy.decision import Clamp
from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.policy.money import usd_to_micros
from outlay.state.base import NewKey, Outcome, Reservation, StateStore, Ticket

from .conftest import OpenStore
from .support import Clock, budget_line, ticket

# 1,000 micro-USD of input, 2 micro-USD per output token, up to 4,000 tokens: 9,000 in all
CLAMP = Clamp(base=1_000 * 1_000_000, per_token=2_000_000, limit=4_000)


def clampable(secret: str) -> Ticket:
    t = ticket(secret, CLAMP.cost(CLAMP.limit), tokens=5_000)
    return replace(t, call=replace(t.call, clamp=CLAMP))


async def test_a_call_over_the_cap_is_admitted_with_a_lower_maximum(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(
        {"budgets": [{"usd": 0.015}], "clamp_max_tokens": 100}))
    first = await store.reserve(clampable(secret))  # fits whole, leaving $0.006
    assert (first.amount, first.clamped_to) == (9_000, None)
    second = await store.reserve(clampable(secret))
    assert second.clamped_to == 2_500  # (6,000 - 1,000) / 2 tokens
    assert second.amount == 6_000
    line = await budget_line(store, "agent:bot", "month")
    assert usd_to_micros(line["reserved_usd"]) == first.amount + second.amount
    rows = {r["request_id"]: r for r in await store.audit("agent:bot", 10)}
    assert usd_to_micros(rows[second.id]["reserved_usd"]) == second.amount
    assert await store.settle(Outcome(second.id, 200, cost_micros=3_000, tokens=1_000))
    line = await budget_line(store, "agent:bot", "month")
    assert usd_to_micros(line["spent_usd"]) == 3_000


async def test_below_the_floor_the_refusal_is_recorded(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(
        {"budgets": [{"usd": 0.0029}], "clamp_max_tokens": 1_000}))  # room for 950 tokens
    refused = clampable(secret)
    with pytest.raises(BudgetExceeded):
        await store.reserve(refused)
    (row,) = await store.audit("agent:bot", 10)
    assert (row["request_id"], row["decision"], row["code"]) == (
        refused.request_id, "refused", "budget_exceeded")
    line = await budget_line(store, "agent:bot", "month")
    assert line["reserved_usd"] == "0"


async def test_the_clamped_tokens_count_in_the_token_window(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    # 4,000 tokens a minute: the call asks 5,000, clamped to 1,000 + 2,000
    await store.put_policy("agent:bot", parse_policy(
        {"budgets": [{"usd": 0.005}], "clamp_max_tokens": True, "tpm": 4_000}))
    held = await store.reserve(clampable(secret))
    assert held.clamped_to == 2_000
    assert held.limits.tokens_remaining == 1_000


@pytest.mark.parametrize("workers", [2])
async def test_concurrent_clamped_calls_never_reserve_past_the_cap(
        open_store: OpenStore, clock: Clock, workers: int) -> None:
    stores = [await open_store(clock) for _ in range(workers)]
    _, secret = await stores[0].create_key(NewKey(agent="bot"))
    cap = 104_000  # eleven whole calls, then 5,000 micro-USD left
    await stores[0].put_policy("global", parse_policy(
        {"budgets": [{"usd": cap / 1_000_000}], "clamp_max_tokens": 50}))

    async def call(i: int) -> Reservation | None:
        try:
            return await stores[i % workers].reserve(clampable(secret))
        except BudgetExceeded:
            return None

    held = [r for r in await asyncio.gather(*(call(i) for i in range(40))) if r is not None]
    total = sum(r.amount for r in held)
    assert total <= cap
    assert cap - total < CLAMP.cost(50)  # what is left could not hold a call at the floor
    clamped = [r for r in held if r.clamped_to is not None]
    assert clamped  # the last calls in were lowered rather than refused
    assert all(50 <= r.clamped_to < CLAMP.limit for r in clamped if r.clamped_to)
    line = await budget_line(stores[0], "global", "month")
    assert usd_to_micros(line["reserved_usd"]) == total


async def test_a_call_with_its_own_floor_is_clamped_with_no_policy_saying_so(
        store: StateStore) -> None:
    """A Twilio call's minutes: clamped whatever `clamp_max_tokens` says, refused when not
    one minute fits."""
    minutes = Clamp(base=0, per_token=14_000 * 1_000_000, limit=240, floor=1)
    _, secret = await store.create_key(NewKey(agent="caller"))
    await store.put_policy("agent:caller", parse_policy({"budgets": [{"usd": 1}]}))
    t = ticket(secret, minutes.cost(240), vendor="twilio", model=None)
    call = replace(t, call=replace(t.call, clamp=minutes))
    held = await store.reserve(call)
    assert (held.clamped_to, held.amount) == (71, 994_000)
    with pytest.raises(BudgetExceeded):  # $0.006 left: not a minute
        await store.reserve(replace(call, request_id="req_second"))
