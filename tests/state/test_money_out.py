"""Money out (`flow: out` budgets) on every store: reserved and settled on counters of its
own, never toward spend budgets (nor spend toward it), kept apart in the ledger's reports,
and counted again from the ledger when a budget is added mid-period."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore, Ticket

from .support import ticket

POLICY = {"budgets": [{"usd": 0.05, "period": "day", "flow": "out"},
                      {"usd": 0.02, "period": "day"}]}


def out(secret: str, micros: int | None, **kw: object) -> Ticket:
    made = ticket(secret, micros, vendor="stripe", model=None, **kw)  # type: ignore[arg-type]
    return replace(made, call=replace(made.call, flow="out"))


def lines(usage: dict[str, object]) -> dict[str, tuple[str, str]]:
    budgets = usage["budgets"]
    assert isinstance(budgets, list)
    return {b["flow"]: (b["spent_usd"], b["reserved_usd"]) for b in budgets}


async def test_money_out_and_spend_count_on_their_own_counters(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(POLICY))
    refund = await store.reserve(out(secret, 30_000))
    payment = await store.reserve(ticket(secret, 15_000))
    assert lines(await store.usage("agent:bot")) == {"out": ("0", "0.03"),
                                                     "spend": ("0", "0.015")}
    # money out past its cap is refused naming its flow; spend still has room, and the
    # reverse
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(out(secret, 20_001))
    assert caught.value.details["flow"] == "out"
    assert caught.value.details["scope"] == "agent:bot"
    with pytest.raises(BudgetExceeded) as caught:
        await store.reserve(ticket(secret, 5_001))
    assert "flow" not in caught.value.details
    assert await store.settle(Outcome(refund.id, 200, cost_micros=25_000))
    assert await store.settle(Outcome(payment.id, 200, cost_micros=15_000))
    assert lines(await store.usage("agent:bot")) == {"out": ("0.025", "0"),
                                                     "spend": ("0.015", "0")}
    exact = await store.reserve(out(secret, 25_000))  # to the cent of the cap
    assert await store.settle(Outcome(exact.id, 200, cost_micros=25_000))
    with pytest.raises(BudgetExceeded):
        await store.reserve(out(secret, 1))
    usage = await store.usage("agent:bot")
    assert usage["spend_by_vendor"] == {"openai": "0.015"}  # money out is not spend
    (line,) = [r for r in await store.report("agent", None) if r["agent"] == "bot"]
    assert (line["cost_usd"], line["out_usd"]) == ("0.015", "0.05")
    rows = await store.audit("agent:bot", 100)
    assert {r["flow"] for r in rows if r["vendor"] == "stripe"} == {"out"}
    assert {r["flow"] for r in rows if r["vendor"] == "openai"} == {"spend"}
    flows = {b.flow: b.spent for b in await store.budgets() if b.scope == "agent:bot"}
    assert flows == {"out": 50_000, "spend": 15_000}


async def test_a_voided_refund_frees_its_reservation(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(POLICY))
    held = await store.reserve(out(secret, 50_000))
    with pytest.raises(BudgetExceeded):
        await store.reserve(out(secret, 1))
    assert await store.settle(Outcome(held.id, 400, settled="void"))
    assert lines(await store.usage("agent:bot"))["out"] == ("0", "0")
    again = await store.reserve(out(secret, 50_000))
    assert again.amount == 50_000


async def test_a_budget_added_mid_period_counts_only_its_flow(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    refund = await store.reserve(out(secret, 30_000))
    assert await store.settle(Outcome(refund.id, 200, cost_micros=30_000))
    payment = await store.reserve(ticket(secret, 15_000))
    assert await store.settle(Outcome(payment.id, 200, cost_micros=15_000))
    in_flight_out = await store.reserve(out(secret, 4_000))
    in_flight_spend = await store.reserve(ticket(secret, 2_000))
    await store.put_policy("agent:bot", parse_policy(POLICY))
    assert lines(await store.usage("agent:bot")) == {"out": ("0.03", "0.004"),
                                                     "spend": ("0.015", "0.002")}
    assert await store.settle(Outcome(in_flight_out.id, 200, cost_micros=4_000))
    assert await store.settle(Outcome(in_flight_spend.id, 200, cost_micros=2_000))
    assert lines(await store.usage("agent:bot")) == {"out": ("0.034", "0"),
                                                     "spend": ("0.017", "0")}


async def test_concurrent_money_out_never_passes_the_cap(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(POLICY))

    async def one(i: int) -> bool:
        try:
            await store.reserve(out(secret, 5_000, request_id=f"r{i}"))
        except BudgetExceeded:
            return False
        return True

    admitted = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(admitted) == 10
    assert lines(await store.usage("agent:bot"))["out"] == ("0", "0.05")


async def test_a_money_out_budget_from_the_configuration_counts_money_out(
        store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    refund = await store.reserve(out(secret, 30_000))
    assert await store.settle(Outcome(refund.id, 200, cost_micros=30_000))
    policy = parse_policy(POLICY)
    assert await store.apply_config_policies("/etc/outlay/outlay.yaml",
                                             {"agent:bot": policy}) == []
    assert await store.get_policy("agent:bot") == policy
    assert lines(await store.usage("agent:bot")) == {"out": ("0.03", "0"),
                                                     "spend": ("0", "0")}
    with pytest.raises(BudgetExceeded):
        await store.reserve(out(secret, 20_001))
