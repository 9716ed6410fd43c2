"""Lease renewal in every backend: a call still in flight past half its lease gets a whole
lease again, so no reaper charges it in full while it runs; what is settled stays settled."""

from __future__ import annotations

import pytest

from outlay.policy.errors import RateLimited
from outlay.state.base import Outcome

from .conftest import OpenStore
from .support import Clock, budget_line, charged, sent, ticket
from .test_reservations import make_key, put


async def test_a_renewed_reservation_outlives_its_first_lease(
    open_store: OpenStore, clock: Clock
) -> None:
    store = await open_store(clock, lease_s=60)
    _, secret = await make_key(store)
    await put(store, "global", {"budgets": [{"usd": 0.01}], "max_parallel": 1})
    held = await store.reserve(ticket(secret, 6_000))
    clock.advance(30)
    assert await store.renew([held.id]) == 1
    clock.advance(59.999)  # 89.999 s after the call began, 59.999 s after the renewal
    await store.heartbeat()
    assert charged(await store.reap()) == 0
    with pytest.raises(RateLimited):  # its parallel slot is still taken
        await store.reserve(ticket(secret, 1_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=2_000))
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.002", "0")
    row = {r["request_id"]: r for r in await store.audit(None, 10)}[held.id]
    assert (row["settlement"], row["cost_usd"]) == ("settled", "0.002")


async def test_a_renewed_lease_still_runs_out(open_store: OpenStore, clock: Clock) -> None:
    store = await open_store(clock, lease_s=60)
    _, secret = await make_key(store)
    held = await sent(store, await store.reserve(ticket(secret, 6_000)))
    clock.advance(30)
    assert await store.renew([held.id]) == 1
    clock.advance(60)  # a whole lease since the renewal, and no renewal after it
    await store.heartbeat()
    assert charged(await store.reap()) == 1
    assert await store.settle(Outcome(held.id, 200, cost_micros=1)) is False


async def test_only_reservations_still_held_are_renewed(
    open_store: OpenStore, clock: Clock
) -> None:
    store = await open_store(clock, lease_s=60)
    _, secret = await make_key(store)
    settled = await store.reserve(ticket(secret, 1_000))
    held = await store.reserve(ticket(secret, 1_000))
    assert await store.settle(Outcome(settled.id, 200, cost_micros=500))
    assert await store.renew([]) == 0
    assert await store.renew([settled.id, "req_unknown", held.id]) == 1
    rows = {r["request_id"]: r for r in await store.audit(None, 10)}
    assert (rows[settled.id]["settlement"], rows[settled.id]["cost_usd"]) == (
        "settled", "0.0005")


async def test_another_workers_reservation_is_not_renewed(
    open_store: OpenStore, clock: Clock
) -> None:
    mine = await open_store(clock, lease_s=60)
    other = await open_store(clock, lease_s=60)
    _, secret = await make_key(mine)
    held = await sent(other, await other.reserve(ticket(secret, 1_000)))
    clock.advance(30)
    assert await mine.renew([held.id]) == 0  # each worker renews the calls it carries
    clock.advance(30)
    await mine.heartbeat()
    await other.heartbeat()
    assert charged(await mine.reap()) == 1
