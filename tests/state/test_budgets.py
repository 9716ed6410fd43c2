"""Budget counters per calendar period: reset at the boundary, seeded when a budget is added."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import Period, parse_policy
from outlay.state.base import NewKey, Outcome, StateStore

from .support import Clock, budget_line, ledger_cost, ticket


async def spend(store: StateStore, secret: str, micros: int, vendor: str = "openai",
                model: str | None = "gpt-4o-mini") -> None:
    held = await store.reserve(ticket(secret, micros, vendor=vendor, model=model))
    assert await store.settle(Outcome(held.id, 200, cost_micros=micros))


@pytest.mark.parametrize(
    ("period", "last_ms", "next_reset"),
    [
        ("hour", datetime(2024, 3, 14, 12, 59, 59, 999_000, UTC), "2024-03-14T14:00:00Z"),
        ("day", datetime(2024, 3, 14, 23, 59, 59, 999_000, UTC), "2024-03-16T00:00:00Z"),
        ("week", datetime(2024, 3, 17, 23, 59, 59, 999_000, UTC), "2024-03-25T00:00:00Z"),
        ("month", datetime(2024, 1, 31, 23, 59, 59, 999_000, UTC), "2024-03-01T00:00:00Z"),
        ("month", datetime(2024, 12, 31, 23, 59, 59, 999_000, UTC), "2025-02-01T00:00:00Z"),
        ("month", datetime(2024, 2, 29, 23, 59, 59, 999_000, UTC), "2024-04-01T00:00:00Z"),
    ],
)
async def test_a_budget_resets_at_the_calendar_boundary(
    store: StateStore, clock: Clock, period: Period, last_ms: datetime, next_reset: str
) -> None:
    clock.set(last_ms - timedelta(minutes=30))
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(
        {"budgets": [{"usd": 0.01, "period": period}]}))
    await spend(store, secret, 10_000)
    clock.set(last_ms)
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(ticket(secret, 1))
    boundary = last_ms + timedelta(milliseconds=1)
    assert caught.value.details["resets_at"] == boundary.isoformat().replace("+00:00", "Z")
    assert caught.value.details["period"] == period
    clock.advance(0.001)  # the first millisecond of the next period
    line = await budget_line(store, "agent:bot", period)
    assert (line["spent_usd"], line["reserved_usd"], line["remaining_usd"]) == ("0", "0", "0.01")
    assert line["resets_at"] == next_reset
    await spend(store, secret, 10_000)
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 1))


async def test_a_total_budget_never_resets(store: StateStore, clock: Clock) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.01,
                                                                   "period": "total"}]}))
    await spend(store, secret, 10_000)
    clock.advance(400 * 86_400)
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(ticket(secret, 1))
    assert caught.value.details["resets_at"] is None
    assert (await budget_line(store, "agent:bot", "total"))["resets_at"] is None


async def test_a_reservation_is_charged_to_the_period_it_was_made_in(
    store: StateStore, clock: Clock
) -> None:
    clock.set(datetime(2024, 1, 31, 23, 59, 59, 999_000, UTC))
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}]}))
    held = await store.reserve(ticket(secret, 8_000))
    clock.advance(0.001)
    assert await store.settle(Outcome(held.id, 200, cost_micros=8_000))
    # as the ledger dates it: the January call does not eat February's budget
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0")
    await spend(store, secret, 10_000)


async def test_a_budget_put_mid_period_starts_from_what_was_spent(
    store: StateStore, clock: Clock
) -> None:
    clock.set(datetime(2024, 2, 20, tzinfo=UTC))
    _, secret = await store.create_key(NewKey(agent="bot"))
    _, other = await store.create_key(NewKey(agent="other"))
    await spend(store, secret, 50_000)  # last month: does not count
    clock.set(datetime(2024, 3, 14, tzinfo=UTC))
    await spend(store, secret, 3_000)
    await spend(store, secret, 3_000, vendor="stripe", model=None)
    await spend(store, other, 7_000)  # another agent's money
    voided = await store.reserve(ticket(secret, 4_000))
    await store.settle(Outcome(voided.id, 400, settled="void"))
    lost = await store.reserve(ticket(secret, 2_000))
    await store.settle(Outcome(lost.id, 0, settled="unsettled"))  # charged: counts
    clock.advance(3_600)
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.01}]}))
    line = await budget_line(store, "agent:bot", "month")
    assert (line["spent_usd"], line["remaining_usd"]) == ("0.008", "0.002")
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 2_001))
    await spend(store, secret, 2_000)
    # the vendor scope is seeded from its own calls only
    await store.put_policy("vendor:stripe", parse_policy({"budgets": [{"usd": 1}]}))
    assert (await budget_line(store, "vendor:stripe", "month"))["spent_usd"] == "0.003"


async def test_putting_the_same_budget_again_keeps_the_counter(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    policy = parse_policy({"budgets": [{"usd": 0.01}]})
    await store.put_policy("global", policy)
    await spend(store, secret, 4_000)
    held = await store.reserve(ticket(secret, 5_000))
    await store.put_policy("global", policy)
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.004", "0.005")
    await store.settle(Outcome(held.id, 200, cost_micros=5_000))
    assert (await budget_line(store, "global", "month"))["spent_usd"] == "0.009"


async def test_a_soft_budget_lets_calls_through(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy(
        {"budgets": [{"usd": 0.01, "mode": "soft", "warn_at": 0.5}]}))
    for _ in range(3):
        await spend(store, secret, 6_000)
    line = await budget_line(store, "global", "month")
    assert (line["mode"], line["spent_usd"], line["remaining_usd"]) == ("soft", "0.018", "0")
    assert await ledger_cost(store) == 18_000


async def test_hard_and_soft_budgets_of_several_periods(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": 0.05, "period": "month"},
        {"usd": 0.01, "period": "day"},
        {"usd": 0.005, "period": "hour", "mode": "soft"},
    ]}))
    await spend(store, secret, 9_000)
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(ticket(secret, 1_001))
    assert caught.value.details["period"] == "day"
    usage = await store.usage("agent:bot")
    assert [(b["period"], b["spent_usd"]) for b in usage["budgets"]] == [
        ("month", "0.009"), ("day", "0.009"), ("hour", "0.009")]


async def test_a_budget_put_while_calls_are_in_flight_holds_them(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    in_flight = await store.reserve(ticket(secret, 6_000))  # before the agent has a budget
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.01}]}))
    line = await budget_line(store, "agent:bot", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0.006")
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 4_001))
    assert await store.settle(Outcome(in_flight.id, 200, cost_micros=5_000))
    line = await budget_line(store, "agent:bot", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.005", "0")
    await spend(store, secret, 5_000)
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 1))
    assert await ledger_cost(store, "agent:bot") == 10_000


async def test_a_budget_removed_then_put_back_counts_the_spend_in_between(
    store: StateStore,
) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    capped = parse_policy({"budgets": [{"usd": 0.01}]})
    await store.put_policy("agent:bot", capped)
    await spend(store, secret, 1_000)
    await store.put_policy("agent:bot", parse_policy({"rpm": 100}))  # no budget for a while
    await spend(store, secret, 8_000)
    await store.delete_policy("agent:bot")
    await spend(store, secret, 500)
    await store.put_policy("agent:bot", capped)
    line = await budget_line(store, "agent:bot", "month")
    assert line["spent_usd"] == "0.0095"
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 501))
    await spend(store, secret, 500)
    assert await ledger_cost(store, "agent:bot") == 10_000
