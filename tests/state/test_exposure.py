"""Vendor objects counted by exposure, on every backend: a call on an object is admitted only on
the record it was priced on and counted there in the same step; what no answer says can
still move is given back, as ledger rows of its own, to every counter that was charged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import KeyRecord, NewKey, Outcome, StateStore
from outlay.state.exposure import ExposureClaim, ExposureReport, ObjectMoved

from .conftest import OpenStore
from .support import Clock, budget_line, ticket

USD = 1_000_000
STATE = '{"k":"pi","c":"usd"}'


async def payer(store: StateStore, usd: int = 100, agent: str = "payer"
                ) -> tuple[KeyRecord, str]:
    await store.put_policy("global", parse_policy({"budgets": [{"usd": usd, "period": "total"}]}))
    return await store.create_key(NewKey(agent=agent))


def claim(object_id: str | None, version: int = 0, state: str | None = None) -> ExposureClaim:
    return ExposureClaim("stripe", object_id, version, state)


def stripe_ticket(secret: str, cost: int, **options: Any) -> Any:
    return ticket(secret, cost, vendor="stripe", model=None, **options)


async def spent(store: StateStore, scope: str = "global") -> tuple[Decimal, Decimal]:
    line = await budget_line(store, scope, "total")
    return Decimal(line["spent_usd"]), Decimal(line["reserved_usd"])


async def ledger_cost(store: StateStore, scope: str | None = None) -> int:
    """The ledger's sum of costs, give-backs (negative) included, in micro-USD."""
    rows = await store.audit(scope, 1_000)
    return int(sum(Decimal(r["cost_usd"]) for r in rows) * USD)


async def create(store: StateStore, secret: str, object_id: str, usd: int) -> None:
    held = await store.reserve_exposure(stripe_ticket(secret, usd * USD), claim(None))
    given = await store.settle_exposure(
        Outcome(held.id, 200, cost_micros=held.amount),
        ExposureReport(object_id, usd * USD, STATE))
    assert given == 0


async def act(store: StateStore, secret: str, object_id: str, delta: int, shows: int | None,
              settlement: str = "settled") -> int | None:
    """A call on the object, priced on its record as it is now."""
    record = await store.vendor_object("stripe", object_id)
    version = 0 if record is None else record.version
    held = await store.reserve_exposure(stripe_ticket(secret, delta),
                                        claim(object_id, version, STATE))
    status = {"settled": 200, "void": 400, "unsettled": 502}[settlement]
    return await store.settle_exposure(
        Outcome(held.id, status, cost_micros=held.amount, settled=settlement),  # type: ignore[arg-type]
        ExposureReport(object_id, shows, STATE if shows is not None else None))


async def test_a_create_starts_the_record_its_answer_names(store: StateStore) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    assert (record.held, record.inflight, record.state) == (20 * USD, 0, STATE)
    assert await spent(store) == (20, 0)
    assert await store.vendor_object("stripe", "pi_other") is None


async def test_raising_the_amount_reserves_the_increase_and_is_refused_past_the_cap(
        store: StateStore) -> None:
    _, secret = await payer(store, usd=50)
    await create(store, secret, "pi_1", 20)
    assert await act(store, secret, "pi_1", 25 * USD, 45 * USD) == 0
    assert await spent(store) == (45, 0)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    assert record.held == 45 * USD
    with pytest.raises(BudgetExceeded):
        await act(store, secret, "pi_1", 10 * USD, 55 * USD)
    after = await store.vendor_object("stripe", "pi_1")
    assert after is not None
    assert (after.held, after.inflight, after.version) == (
        45 * USD, 0, record.version)


async def test_a_call_priced_on_an_older_record_is_not_admitted(store: StateStore) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    rows = len(await store.audit(None, 100))
    with pytest.raises(ObjectMoved):
        await store.reserve_exposure(stripe_ticket(secret, USD),
                                     claim("pi_1", record.version - 1))
    with pytest.raises(ObjectMoved):  # nobody counted it yet, but now somebody has
        await store.reserve_exposure(stripe_ticket(secret, USD), claim("pi_2", 1))
    assert len(await store.audit(None, 100)) == rows
    assert await spent(store) == (20, 0)


async def test_a_partial_capture_gives_back_what_will_not_move_as_a_row_of_its_own(
        store: StateStore) -> None:
    record, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    assert await act(store, secret, "pi_1", 0, 5 * USD) == 15 * USD
    assert await spent(store) == (5, 0)
    assert await ledger_cost(store) == 5 * USD
    (credit,) = [r for r in await store.audit(None, 100) if r["decision"] == "credit"]
    assert (credit["cost_usd"], credit["key_id"], credit["vendor"], credit["route"]) == (
        "-15", record.id, "stripe", "vendor.stripe")
    assert await ledger_cost(store, f"agent:{record.agent}") == 5 * USD
    usage = await store.usage("global")
    assert usage["spend_by_vendor"] == {"stripe": "5"}


async def test_a_cancel_returns_the_budget_to_where_it_was(store: StateStore) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    await act(store, secret, "pi_1", 30 * USD, 50 * USD)
    assert await act(store, secret, "pi_1", 0, 0) == 50 * USD
    assert await spent(store) == (0, 0)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    assert record.held == 0
    assert await act(store, secret, "pi_1", 0, 0) == 0  # nothing left to give


async def test_a_give_back_reaches_the_scopes_of_each_charge_newest_first(
        store: StateStore) -> None:
    _first, secret = await payer(store)
    _second, other = await store.create_key(NewKey(agent="helper"))
    for agent in ("payer", "helper"):
        await store.put_policy(f"agent:{agent}", parse_policy({"budgets": [
            {"usd": 100, "period": "total"}]}))
    await create(store, secret, "pi_1", 20)
    await act(store, other, "pi_1", 10 * USD, 30 * USD)  # the helper raised it by 10
    assert await act(store, secret, "pi_1", 0, 15 * USD) == 15 * USD
    assert await spent(store, "agent:helper") == (0, 0)
    assert await spent(store, "agent:payer") == (15, 0)
    assert await spent(store) == (15, 0)
    credits = [r for r in await store.audit(None, 100) if r["decision"] == "credit"]
    assert sorted((r["agent"], r["cost_usd"]) for r in credits) == [
        ("helper", "-10"), ("payer", "-5")]


async def test_a_refused_or_unknown_answer_gives_nothing_back(store: StateStore) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    assert await act(store, secret, "pi_1", 30 * USD, None, "void") == 0
    assert await spent(store) == (20, 0)  # the increase was voided with the call
    assert await act(store, secret, "pi_1", 0, None, "unsettled") == 0
    assert await act(store, secret, "pi_1", 0, None) == 0  # a 2xx that shows nothing
    assert await spent(store) == (20, 0)
    assert await act(store, secret, "pi_1", 0, 0) == 20 * USD  # then an answer that does


async def test_overlapping_calls_give_back_only_what_no_answer_says_can_move(
        store: StateStore) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    raise_it = await store.reserve_exposure(stripe_ticket(secret, 10 * USD),
                                            claim("pi_1", record.version))
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    assert (record.held, record.inflight) == (30 * USD, 1)
    cancel = await store.reserve_exposure(stripe_ticket(secret, 0),
                                          claim("pi_1", record.version))
    # the cancel answers first; the update, applied before it by the vendor, answers last
    assert await store.settle_exposure(Outcome(cancel.id, 200),
                                       ExposureReport("pi_1", 0, STATE)) == 0
    assert await store.settle_exposure(Outcome(raise_it.id, 200, cost_micros=10 * USD),
                                       ExposureReport("pi_1", 30 * USD, STATE)) == 0
    assert await spent(store) == (30, 0)  # either could be last: the most shown stands
    assert await act(store, secret, "pi_1", 0, 0) == 30 * USD


async def test_an_adopted_object_starts_with_the_state_read_from_the_vendor(
        store: StateStore) -> None:
    _, secret = await payer(store, usd=50)
    with pytest.raises(BudgetExceeded):
        await store.reserve_exposure(stripe_ticket(secret, 60 * USD), claim("pi_x", 0, "{}"))
    assert await store.vendor_object("stripe", "pi_x") is None
    held = await store.reserve_exposure(stripe_ticket(secret, 30 * USD), claim("pi_x", 0, "{}"))
    record = await store.vendor_object("stripe", "pi_x")
    assert record is not None
    assert (record.held, record.inflight, record.state) == (
        30 * USD, 1, "{}")
    await store.settle_exposure(Outcome(held.id, 200, cost_micros=30 * USD),
                                ExposureReport("pi_x", 30 * USD, STATE))
    assert await spent(store) == (30, 0)


async def test_a_call_its_dead_worker_never_sent_is_voided_on_its_object(
        store: StateStore, open_store: OpenStore, clock: Clock) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    await store.reserve_exposure(stripe_ticket(secret, 5 * USD), claim("pi_1", record.version))
    await store.close()  # the worker stops before sending the call
    restarted = await open_store(clock)
    assert [(line.charged, line.voided) for line in await restarted.reap()] == [(0, 1)]
    after = await restarted.vendor_object("stripe", "pi_1")
    assert after is not None
    assert (after.held, after.inflight) == (20 * USD, 0)
    assert await spent(restarted) == (20, 0)
    await store.open()  # so the fixture can close it


async def test_a_call_the_reaper_charges_leaves_its_object_held(
        store: StateStore, open_store: OpenStore, clock: Clock) -> None:
    _, secret = await payer(store)
    await create(store, secret, "pi_1", 20)
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    held = await store.reserve_exposure(stripe_ticket(secret, 5 * USD),
                                        claim("pi_1", record.version))
    assert await store.forwarding(held.id)  # sent
    await store.close()  # the worker stops with the call in flight
    restarted = await open_store(clock)
    assert sum(line.charged for line in await restarted.reap()) == 1
    after = await restarted.vendor_object("stripe", "pi_1")
    assert after is not None
    assert (after.held, after.inflight) == (25 * USD, 0)
    assert await spent(restarted) == (25, 0)
    assert await act(restarted, secret, "pi_1", 0, 0) == 25 * USD  # the next answer counts
    await store.open()  # so the fixture can close it


async def test_a_replayed_create_counts_nothing_more(store: StateStore) -> None:
    _, secret = await payer(store)
    first = await store.reserve_exposure(
        stripe_ticket(secret, 20 * USD, idempotency_key="k1"), claim(None))
    again = await store.reserve_exposure(
        stripe_ticket(secret, 20 * USD, idempotency_key="k1"), claim(None))
    assert again.amount == 0
    report = ExposureReport("pi_1", 20 * USD, STATE)
    assert await store.settle_exposure(Outcome(again.id, 200), report) == 0
    assert await store.settle_exposure(Outcome(first.id, 200, cost_micros=20 * USD),
                                       report) == 0
    assert await store.settle_exposure(Outcome(first.id, 200), report) is None
    record = await store.vendor_object("stripe", "pi_1")
    assert record is not None
    assert record.held == 20 * USD
    assert await spent(store) == (20, 0)
