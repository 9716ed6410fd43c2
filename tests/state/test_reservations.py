"""Reserve and settle: holds on every scope, settling, voiding, unsettled calls, reaping."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.errors import BadRequest, BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import KeyRecord, NewKey, Outcome, StateStore

from .conftest import OpenStore
from .support import Clock, budget_line, charged, ledger_cost, ticket


async def make_key(store: StateStore) -> tuple[KeyRecord, str]:
    await store.create_agent("bot", "fleet")
    return await store.create_key(NewKey(agent="bot", labels={"run": "r-1"}))


def scopes_of(record: KeyRecord) -> tuple[str, ...]:
    return (f"key:{record.id}", "agent:bot", "group:fleet", "vendor:openai", "global")


async def put(store: StateStore, scope: str, policy: dict[str, Any]) -> None:
    await store.put_policy(scope, parse_policy(policy))


async def test_a_reservation_holds_on_every_scope_with_a_budget(
    store: StateStore, clock: Clock
) -> None:
    record, secret = await make_key(store)
    for scope in scopes_of(record):
        await put(store, scope, {"budgets": [{"usd": 0.01, "period": "month"}]})
    reservation = await store.reserve(ticket(secret, 4_000, request_id="req_1"))
    assert reservation.id == "req_1"
    assert reservation.amount == 4_000
    assert reservation.started_ms == clock.now
    assert reservation.key.id == record.id
    assert reservation.limits.budget_cap == 10_000
    assert reservation.limits.budget_remaining == 6_000
    for scope in scopes_of(record):
        line = await budget_line(store, scope, "month")
        assert (line["spent_usd"], line["reserved_usd"], line["remaining_usd"]) == (
            "0", "0.004", "0.006"), scope
    assert await store.settle(Outcome("req_1", 200, cost_micros=2_500))
    for scope in scopes_of(record):
        line = await budget_line(store, scope, "month")
        assert (line["spent_usd"], line["reserved_usd"], line["remaining_usd"]) == (
            "0.0025", "0", "0.0075"), scope


@pytest.mark.parametrize("tight", range(5))
async def test_the_tightest_scope_refuses(store: StateStore, tight: int) -> None:
    record, secret = await make_key(store)
    scopes = scopes_of(record)
    for i, scope in enumerate(scopes):
        await put(store, scope, {"budgets": [{"usd": 0.005 if i == tight else 1}]})
    await store.reserve(ticket(secret, 4_000))
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(ticket(secret, 1_001))
    assert caught.value.details["scope"] == scopes[tight]
    # reserved money counts against the cap, shown beside what is spent
    assert (caught.value.details["spent_usd"], caught.value.details["held_usd"]) == (
        "0", "0.004")
    assert caught.value.details["cap_usd"] == "0.005"
    await store.reserve(ticket(secret, 1_000))  # exactly up to the cap
    row = (await store.audit(None, 2))[1]
    assert (row["decision"], row["code"], row["status"], row["refused_by"]) == (
        "refused", "budget_exceeded", 402, scopes[tight])


async def test_settling_below_the_reservation_frees_the_difference(store: StateStore) -> None:
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}]})
    first = await store.reserve(ticket(secret, 6_000))
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 6_000))
    assert await store.settle(Outcome(first.id, 200, cost_micros=1_000))
    await store.reserve(ticket(secret, 6_000))
    await store.reserve(ticket(secret, 3_000))  # 1_000 + 6_000 + 3_000: the cap, exactly
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 1))


async def test_void_returns_the_money(store: StateStore) -> None:
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}]})
    held = await store.reserve(ticket(secret, 6_000))
    assert await store.settle(Outcome(held.id, 400, settled="void"))
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0")
    await store.reserve(ticket(secret, 10_000))
    row = next(r for r in await store.audit(None, 10) if r["request_id"] == held.id)
    assert (row["settlement"], row["cost_usd"], row["status"]) == ("void", "0", 400)


async def test_unsettled_is_charged_in_full(store: StateStore) -> None:
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}]})
    held = await store.reserve(ticket(secret, 6_000))
    # a broken connection after the request was sent: whatever the outcome says it cost
    assert await store.settle(Outcome(held.id, 0, cost_micros=5, settled="unsettled"))
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.006", "0")
    row = (await store.audit(None, 1))[0]
    assert (row["settlement"], row["cost_usd"], row["reserved_usd"]) == (
        "unsettled", "0.006", "0.006")


async def test_settling_twice_applies_once(store: StateStore) -> None:
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 1}]})
    held = await store.reserve(ticket(secret, 6_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=4_000)) is True
    assert await store.settle(Outcome(held.id, 200, cost_micros=4_000)) is False
    assert await store.settle(Outcome(held.id, 400, settled="void")) is False
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.004", "0")
    assert await ledger_cost(store) == 4_000
    assert await store.settle(Outcome("req_never_reserved", 200, cost_micros=1)) is False


async def test_price_unknown_under_a_hard_budget(store: StateStore) -> None:
    _, secret = await make_key(store)
    await store.reserve(ticket(secret, None))  # no hard budget: reserved at nothing
    await put(store, "vendor:openai", {"budgets": [{"usd": 5}]})
    with pytest.raises(BadRequest) as caught:
        await store.reserve(ticket(secret, None))
    assert (caught.value.status, caught.value.code) == (400, "price_unknown")
    row = (await store.audit(None, 1))[0]
    assert (row["decision"], row["code"], row["status"]) == ("refused", "price_unknown", 400)


async def test_reap_charges_reservations_whose_lease_ran_out(
    open_store: OpenStore, clock: Clock
) -> None:
    store = await open_store(clock, lease_s=60)
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}], "max_parallel": 1})
    held = await store.reserve(ticket(secret, 6_000))
    assert await store.forwarding(held.id)  # sent: it may have been served
    clock.advance(59.999)
    await store.heartbeat()  # the worker is alive; only the lease matters
    assert charged(await store.reap()) == 0
    clock.advance(0.001)
    await store.heartbeat()
    assert charged(await store.reap()) == 1
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.006", "0")
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["settlement"], row["cost_usd"]) == (
        held.id, "unsettled", "0.006")
    assert await store.settle(Outcome(held.id, 200, cost_micros=1)) is False  # too late
    assert charged(await store.reap()) == 0
    await store.reserve(ticket(secret, 4_000))  # the parallel slot was freed too


async def test_reap_charges_reservations_of_a_dead_worker(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}]})
    held = await store.reserve(ticket(secret, 6_000))  # held by `store`, which then dies
    assert await store.forwarding(held.id)  # after sending it
    survivor = await open_store(clock)
    clock.advance(5)
    await survivor.heartbeat()
    assert charged(await survivor.reap()) == 0  # 5 s of silence is not yet death
    clock.advance(0.001)
    await survivor.heartbeat()
    kept = await survivor.reserve(ticket(secret, 1_000))
    assert charged(await survivor.reap()) == 1
    line = await budget_line(survivor, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.006", "0.001")
    assert await store.settle(Outcome(held.id, 200, cost_micros=1)) is False
    assert await survivor.settle(Outcome(kept.id, 200, cost_micros=1_000)) is True


async def test_reap_voids_the_calls_a_dead_worker_never_sent(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    """A worker that dies between a call's decision and its sending leaves a call that was
    never sent: voided, never charged; one it marked forwarded is charged in full (it may
    have been served)."""
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}]})
    unsent = await store.reserve(ticket(secret, 6_000))
    sent = await store.reserve(ticket(secret, 3_000))
    assert await store.forwarding(sent.id)
    survivor = await open_store(clock)
    clock.advance(5.001)
    await survivor.heartbeat()
    (reaped,) = await survivor.reap()
    assert (reaped.charged, reaped.micros, reaped.voided) == (1, 3_000, 1)
    line = await budget_line(survivor, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.003", "0")
    rows = {row["request_id"]: row for row in await survivor.audit(None, 10)}
    assert (rows[unsent.id]["settlement"], rows[unsent.id]["cost_usd"]) == ("void", "0")
    assert (rows[sent.id]["settlement"], rows[sent.id]["cost_usd"]) == ("unsettled", "0.003")
    assert not await store.forwarding(unsent.id)  # reaped meanwhile: not to be sent now
    assert await store.settle(Outcome(unsent.id, 200, cost_micros=1)) is False


async def test_a_worker_that_keeps_its_heartbeat_is_not_reaped(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    _, secret = await make_key(store)
    held = await store.reserve(ticket(secret, 6_000))
    other = await open_store(clock)
    for _ in range(10):
        clock.advance(4)
        await store.heartbeat()
        await other.heartbeat()
        assert charged(await other.reap()) == 0
    assert await store.settle(Outcome(held.id, 200, cost_micros=10))
