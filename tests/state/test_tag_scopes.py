"""Tag scopes on every store: `tag:<name>=<value>` and `tag:<name>=*` (one bucket per value),
the key's labels over the call's tags, required tags, the bound on the values tracked."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from outlay.policy.errors import BadRequest, BudgetExceeded, RateLimited
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore, Ticket

from .conftest import OpenStore
from .support import Clock, ledger_cost, ticket


def tagged(secret: str, cost: int = 1_000, **tags: str) -> Ticket:
    return replace(ticket(secret, cost), tags=tags)


async def spend(store: StateStore, t: Ticket) -> None:
    held = await store.reserve(t)
    assert await store.settle(Outcome(held.id, 200, cost_micros=held.amount))


async def test_a_star_policy_gives_each_value_its_own_budget(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("tag:customer=*", parse_policy(
        {"budgets": [{"usd": 0.003, "period": "day"}]}))
    for _ in range(3):
        await spend(store, tagged(secret, customer="acme"))
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(tagged(secret, customer="acme"))
    assert caught.value.details["scope"] == "tag:customer=acme"
    # another value has its own $0.003, and a call without the tag is under no tag budget
    for _ in range(3):
        await spend(store, tagged(secret, customer="beta"))
    await spend(store, ticket(secret, 5_000))
    assert await ledger_cost(store, "tag:customer=acme") == 3_000
    assert await ledger_cost(store, "tag:customer=beta") == 3_000
    usage = await store.usage("tag:customer=*")
    assert usage["values_seen"] == 2
    assert usage["max_values"] == 100_000
    assert [(v["value"], v["scope"], v["budgets"][0]["spent_usd"]) for v in usage["values"]] \
        == [("acme", "tag:customer=acme", "0.003"), ("beta", "tag:customer=beta", "0.003")]
    one = await store.usage("tag:customer=acme")
    assert one["budgets"][0]["remaining_usd"] == "0"
    assert all(line.scope != "tag:customer=*" for line in await store.budgets())


async def test_a_value_s_own_policy_replaces_the_star_policy(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("tag:customer=*", parse_policy(
        {"budgets": [{"usd": 0.001, "period": "day"}]}))
    await store.put_policy("tag:customer=big", parse_policy(
        {"budgets": [{"usd": 0.005, "period": "day"}]}))
    for _ in range(5):
        await spend(store, tagged(secret, customer="big"))
    with pytest.raises(BudgetExceeded):
        await store.reserve(tagged(secret, customer="big"))
    await spend(store, tagged(secret, customer="small"))
    with pytest.raises(BudgetExceeded):
        await store.reserve(tagged(secret, customer="small"))
    # the value with its own policy is not one the `*` policy tracks
    assert (await store.usage("tag:customer=*"))["values_seen"] == 1


async def test_the_key_s_labels_win_over_the_call_s_tags(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot", labels={"customer": "acme"}))
    await store.put_policy("tag:customer=acme", parse_policy(
        {"budgets": [{"usd": 0.001, "period": "day"}]}))
    await spend(store, tagged(secret, customer="other", workflow="nightly"))
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(tagged(secret, customer="other"))
    assert caught.value.details["scope"] == "tag:customer=acme"
    rows = await store.audit("tag:customer=acme", 10)
    assert rows[-1]["labels"] == {"customer": "acme", "workflow": "nightly"}
    assert await store.audit("tag:customer=other", 10) == []
    assert [r["decision"] for r in await store.audit("tag:workflow=nightly", 10)] == ["allowed"]


async def test_a_required_tag_refuses_a_call_without_it(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(
        agent="bot", policy=parse_policy({"required_tags": ["customer"]})))
    with pytest.raises(BadRequest) as caught:
        await store.reserve(tagged(secret, workflow="x"))
    assert (caught.value.code, caught.value.status) == ("missing_tag", 400)
    assert caught.value.details["tag"] == "customer"
    await spend(store, tagged(secret, customer="acme"))
    rows = await store.audit(None, 10)
    assert [(r["decision"], r["code"], r["cost_usd"]) for r in rows] == [
        ("allowed", None, "0.001"), ("refused", "missing_tag", "0")]


async def test_max_values_bounds_the_values_tracked_per_period(
        store: StateStore, clock: Clock) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("tag:session=*", parse_policy(
        {"max_values": 2, "budgets": [{"usd": 1, "period": "day"}]}))
    await spend(store, tagged(secret, session="s1"))
    await spend(store, tagged(secret, session="s2"))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(tagged(secret, session="s3"))
    assert (caught.value.code, caught.value.status) == ("too_many_tag_values", 429)
    assert caught.value.details["scope"] == "tag:session=*"
    await spend(store, tagged(secret, session="s1"))  # a value tracked already passes
    rows = await store.audit(None, 1)
    assert (rows[0]["decision"], await ledger_cost(store, "tag:session=s3")) == ("allowed", 0)
    assert (await store.usage("tag:session=*"))["values_seen"] == 2
    clock.advance(86_400)  # a new day: the values are counted anew
    await spend(store, tagged(secret, session="s3"))
    assert (await store.usage("tag:session=*"))["values_seen"] == 1


async def test_rate_limits_and_parallel_calls_per_value(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("tag:customer=*", parse_policy({"rpm": 2, "max_parallel": 1}))
    first = await store.reserve(tagged(secret, customer="a"))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(tagged(secret, customer="a"))
    assert caught.value.code == "concurrency_limit_exceeded"
    await store.reserve(tagged(secret, customer="b"))  # another value: its own counts
    assert await store.settle(Outcome(first.id, 200, cost_micros=10))
    await spend(store, tagged(secret, customer="a"))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(tagged(secret, customer="a"))
    assert caught.value.code == "rate_limit_exceeded"


async def test_the_tightest_budget_names_its_scope(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1, "period": "day"}]}))
    await store.put_policy("tag:customer=*", parse_policy(
        {"budgets": [{"usd": 0.01, "period": "day"}]}))
    held = await store.reserve(tagged(secret, customer="acme"))
    assert (held.limits.budget_scope, held.limits.budget_remaining) == (
        "tag:customer=acme", 9_000)
    held = await store.reserve(ticket(secret, 1_000))
    assert held.limits.budget_scope == "agent:bot"


async def test_no_value_passes_its_cap_under_concurrent_calls_on_two_workers(
        store: StateStore, open_store: OpenStore, clock: Clock) -> None:
    other = await open_store(clock)
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("tag:customer=*", parse_policy(
        {"budgets": [{"usd": 0.005, "period": "day"}], "hold_wait_ms": 0}))

    async def one(worker: StateStore, value: str) -> int:
        try:
            held = await worker.reserve(tagged(secret, 1_000, customer=value))
        except BudgetExceeded:
            return 0
        await worker.settle(Outcome(held.id, 200, cost_micros=held.amount))
        return 1

    values = [f"c{i}" for i in range(5)]
    admitted = await asyncio.gather(*(one(w, v) for v in values for w in (store, other)
                                      for _ in range(4)))
    assert sum(admitted) == 5 * 5  # each value exactly its five calls
    for value in values:
        assert await ledger_cost(store, f"tag:customer={value}") == 5_000
