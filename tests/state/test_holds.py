"""A call held back by other calls' reservations, not by spend: the store says so (BudgetHeld)
and records nothing, so the gateway can ask again once they settle; decided without waiting,
it is refused with a ledger row saying what was spent, what was held, what it may cost and
how long it waited. On every backend."""

from __future__ import annotations

from dataclasses import replace

import pytest

from outlay.policy.errors import BudgetExceeded, BudgetHeld
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore, Ticket

from .support import budget_line, ticket

CAP = {"budgets": [{"usd": "0.01", "period": "day", "mode": "hard"}], "hold_wait_ms": 1_500}


def waiting(secret: str, cost: int, **fields: object) -> Ticket:
    return replace(ticket(secret, cost), may_wait=True, **fields)  # type: ignore[arg-type]


async def test_a_call_held_back_by_calls_in_flight_records_nothing(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await store.create_key(NewKey(agent="bot"))
    first = await store.reserve(ticket(secret, 6_000))
    before = await store.audit(None, 10)

    with pytest.raises(BudgetHeld) as held:
        await store.reserve(waiting(secret, 5_000))
    assert held.value.wait_ms == 1_500
    assert (held.value.status, held.value.details["spent_usd"],
            held.value.details["held_usd"]) == (402, "0", "0.006")
    assert await store.audit(None, 10) == before  # not decided yet: nothing written
    assert (await budget_line(store, "agent:bot", "day"))["reserved_usd"] == "0.006"

    assert await store.settle(Outcome(first.id, 200, cost_micros=3_000))
    second = await store.reserve(waiting(secret, 5_000, waited_ms=120))
    assert second.amount == 5_000
    assert await store.settle(Outcome(second.id, 200, cost_micros=5_000))
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["decision"], row["waited_ms"]) == (second.id, "allowed", 120)


async def test_decided_without_waiting_the_refusal_shows_spend_holds_and_the_wait(
        store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.reserve(ticket(secret, 6_000))
    late = replace(ticket(secret, 5_000), waited_ms=1_500)  # its wait is over
    with pytest.raises(BudgetExceeded) as refused:
        await store.reserve(late)
    assert not isinstance(refused.value, BudgetHeld)
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["code"], row["spent_usd"], row["held_usd"],
            row["cap_usd"], row["estimated_usd"], row["waited_ms"]) == (
        late.request_id, "budget_exceeded", "0", "0.006", "0.01", "0.005", 1_500)


async def test_a_call_settled_spend_has_no_room_for_is_refused_at_once(
        store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await store.create_key(NewKey(agent="bot"))
    spent = await store.reserve(ticket(secret, 8_000))
    assert await store.settle(Outcome(spent.id, 200, cost_micros=8_000))
    await store.reserve(ticket(secret, 1_000))  # in flight
    with pytest.raises(BudgetExceeded) as refused:
        await store.reserve(waiting(secret, 3_000))
    assert not isinstance(refused.value, BudgetHeld)
    row = (await store.audit(None, 1))[0]
    assert (row["spent_usd"], row["held_usd"], row["estimated_usd"], row["waited_ms"]) == (
        "0.008", "0.001", "0.003", 0)
    # what the audit promises: settled spend alone left no room for the call
    assert 8_000 + 3_000 > 10_000


async def test_hold_wait_ms_zero_never_holds(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({**CAP, "hold_wait_ms": 0}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.reserve(ticket(secret, 6_000))
    with pytest.raises(BudgetExceeded) as refused:
        await store.reserve(waiting(secret, 5_000))
    assert not isinstance(refused.value, BudgetHeld)
