"""The replicated store when Redis loses its data: the hot state comes back from the ledger
(spend, windows, calls in flight) before the next decision, and the ledger loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from outlay.policy.errors import BudgetExceeded, RateLimited
from outlay.policy.model import parse_policy
from outlay.policy.periods import period_bounds
from outlay.state.base import NewKey, Outcome, StateError
from outlay.state.open import store_from_url
from outlay.state.redis.plan import counter_ttl_ms
from outlay.state.redis.store import RedisStore
from outlay.state.redis.wal import entries_of
from outlay.state.redis.windows import stored_window

from ...servers.redis import RedisServer
from ..support import Clock, budget_line, eventually, ledger_cost, ticket


@pytest.fixture
async def open_redis_store(redis_url: str, postgres_dsn: str
                           ) -> AsyncIterator[Callable[..., RedisStore]]:
    opened: list[RedisStore] = []

    def make(clock: Clock) -> RedisStore:
        store = store_from_url(redis_url, database=postgres_dsn, clock=clock,
                               rebuild_grace_s=0.0)
        assert isinstance(store, RedisStore)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def empty_redis(store: RedisStore) -> None:
    """What a restart without persistence, or FLUSHALL, does to this installation."""
    keys = [k async for k in store.redis.scan_iter(store.names.prefix + "*")]
    await store.redis.delete(*keys)


async def test_spend_windows_and_calls_in_flight_come_back(
    open_redis_store: Callable[..., RedisStore], clock: Clock
) -> None:
    store = open_redis_store(clock)
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(
        {"rpm": 4, "budgets": [{"usd": 0.01, "period": "day"}]}))
    done = await store.reserve(ticket(secret, 3_000))
    assert await store.settle(Outcome(done.id, 200, cost_micros=2_000))
    in_flight = await store.reserve(ticket(secret, 4_000))
    await empty_redis(store)

    third = await store.reserve(ticket(secret, 1_000))  # rebuilt first, then decided
    line = await budget_line(store, "agent:bot", "day")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.002", "0.005")
    with pytest.raises(BudgetExceeded):  # 2_000 spent + 5_000 held + 4_000 > 10_000
        await store.reserve(ticket(secret, 4_000))
    # the call in flight when Redis emptied settles at its real cost, once
    assert await store.settle(Outcome(in_flight.id, 200, cost_micros=1_500))
    assert not await store.settle(Outcome(in_flight.id, 200, cost_micros=1_500))
    assert await store.settle(Outcome(third.id, 200, cost_micros=1_000))
    line = await budget_line(store, "agent:bot", "day")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.0045", "0")
    assert await ledger_cost(store) == 4_500
    await store.reserve(ticket(secret, 0))  # the 4th call this minute (and the refused 5th)
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret, 0))


async def test_rebuilt_counters_and_windows_expire_as_the_scripts_make_them(
    open_redis_store: Callable[..., RedisStore], clock: Clock
) -> None:
    store = open_redis_store(clock)
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy(
        {"tpm": 10_000, "budgets": [{"usd": 1, "period": "day"}]}))
    done = await store.reserve(ticket(secret, 3_000, tokens=120))
    assert await store.settle(Outcome(done.id, 200, cost_micros=2_000, tokens=100))
    await store.wal.flush()
    await empty_redis(store)
    await store.reserve(ticket(secret, 1_000, tokens=50))  # rebuilt first, then decided
    names, now = store.names, clock()
    counter = names.counter("agent:bot", "day", period_bounds("day", now)[0])
    assert 0 < await store.redis.pttl(counter) <= counter_ttl_ms("day")
    window = names.window("agent:bot", "tpm")
    assert 61_000 < await store.redis.pttl(window) <= 62_000
    assert stored_window(await store.redis.hgetall(window), 1_000, now).used == 100 + 50
    # a budget period new to the scope: its counter, made by adopt.lua, expires as well
    await store.put_policy("agent:bot", parse_policy(
        {"tpm": 10_000, "budgets": [{"usd": 1, "period": "day"}, {"usd": 5, "period": "week"}]}))
    weekly = names.counter("agent:bot", "week", period_bounds("week", now)[0])
    assert 0 < await store.redis.pttl(weekly) <= counter_ttl_ms("week")


async def test_a_vendor_accounts_idempotency_keys_come_back(
    open_redis_store: Callable[..., RedisStore], clock: Clock
) -> None:
    store = open_redis_store(clock)
    await store.open()
    _, first = await store.create_key(NewKey(agent="bot"))
    _, second = await store.create_key(NewKey(agent="bot"))
    paid = await store.reserve(replace(ticket(first, 3_000, vendor="stripe", model=None,
                                              idempotency_key="order-1"),
                                       idempotency_account="acct"))
    assert await store.settle(Outcome(paid.id, 200, cost_micros=3_000))
    await store.wal.flush()  # the ledger in PostgreSQL holds the call
    await empty_redis(store)
    again = await store.reserve(replace(ticket(second, 3_000, vendor="stripe", model=None,
                                               idempotency_key="order-1"),
                                        idempotency_account="acct"))
    assert (again.amount, again.replay_of) == (0, paid.id)
    elsewhere = await store.reserve(replace(ticket(second, 3_000, vendor="stripe", model=None,
                                                   idempotency_key="order-1"),
                                            idempotency_account="acct-2"))
    assert (elsewhere.amount, elsewhere.replay_of) == (3_000, None)


@pytest.mark.parametrize("settle_by", ["awaiting it", "queueing it"])
async def test_redis_unreachable_fails_closed_and_keeps_the_settlement(
    own_redis_server: RedisServer, postgres_dsn: str, clock: Clock, settle_by: str
) -> None:
    store = store_from_url(own_redis_server.url, database=postgres_dsn, clock=clock,
                           rebuild_grace_s=0.0)
    await store.open()
    try:
        _, secret = await store.create_key(NewKey(agent="bot"))
        await store.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
        held = await store.reserve(ticket(secret, 5_000))
        await store.audit(None, 10)  # its ledger row is in PostgreSQL
        own_redis_server.stop()
        with pytest.raises(StateError, match="Redis unavailable"):
            await store.reserve(ticket(secret, 1_000))
        outcome = Outcome(held.id, 200, cost_micros=1_234)
        if settle_by == "awaiting it":
            with pytest.raises(StateError):
                await store.settle(outcome)
        else:  # an answered LLM call's: sent with the loop turn's scripts, and it fails
            assert store.queue_settlement(outcome)
            await asyncio.sleep(0.1)
        assert store.settlement_retries().waiting == 1  # kept, not dropped
        own_redis_server.start()  # empty: rebuilt from the ledger, the call still in flight
        for _ in range(3):  # the first may meet a pooled connection Redis closed
            with contextlib.suppress(StateError):
                await store.heartbeat()  # which rebuilds the emptied state
                break
        # and the kept settlement is applied to it, now or at its next try
        await eventually(lambda: store.settlement_retries().waiting == 0, timeout_s=15)
        line = await budget_line(store, "global", "month")
        assert (line["spent_usd"], line["reserved_usd"]) == ("0.001234", "0")
        (row,) = [r for r in await store.audit(None, 10) if r["request_id"] == held.id]
        assert (row["settlement"], row["cost_usd"]) == ("settled", "0.001234")
        counts = store.settlement_retries()
        assert (counts.waiting, counts.abandoned) == (0, 0)
        assert counts.retried >= 1
    finally:
        await store.close()


async def test_a_settlement_kept_while_redis_is_down_lands_by_itself_once_it_is_back(
    own_redis_server: RedisServer, postgres_dsn: str, clock: Clock
) -> None:
    store = store_from_url(own_redis_server.url, database=postgres_dsn, clock=clock,
                           rebuild_grace_s=0.0)
    assert isinstance(store, RedisStore)
    await store.open()
    try:
        _, secret = await store.create_key(NewKey(agent="bot"))
        await store.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
        held = [await store.reserve(ticket(secret, 5_000)) for _ in range(3)]
        await store.redis.save()  # this restart keeps the data
        own_redis_server.stop()
        with pytest.raises(StateError):
            await store.settle(Outcome(held[0].id, 200, cost_micros=1_000))
        for h in held[1:]:
            assert store.queue_settlement(Outcome(h.id, 200, cost_micros=1_000))
        await eventually(lambda: store.settlement_retries().waiting == 3)
        await asyncio.sleep(0.3)  # tried again meanwhile, backing off
        assert store.settlement_retries().retried >= 2
        own_redis_server.start()
        await eventually(lambda: store.settlement_retries().waiting == 0, timeout_s=15)
        line = await budget_line(store, "global", "month")
        assert (line["spent_usd"], line["reserved_usd"]) == ("0.003", "0")
        assert await ledger_cost(store) == 3_000
    finally:
        await store.close()


def test_stream_entries_decode_to_idempotent_ledger_writes() -> None:
    row = '{"request_id": "r1", "code": null, "overage_code": "alert_overage"}'
    reserved = entries_of({"k": "r", "row": row, "ov": "1", "sp": "900", "cap": "1000"})
    assert reserved == [{"t": "row", "row": {"request_id": "r1", "code": "alert_overage",
                                             "spent": 900, "cap": 1000}}]
    settled = entries_of({"k": "s", "row": row, "ov": "0", "sp": "", "cap": "",
                          "mode": "settled", "cost": "700", "tokens": "12", "status": "200",
                          "model": "", "reserved": "1000"})
    assert settled[0]["row"]["code"] is None
    assert settled[1] == {"t": "settle", "request_id": "r1", "status": 200, "cost": 700,
                          "settlement": "settled", "model": None, "reserved": 1000,
                          "tokens": 12}
    written = entries_of({"k": "j", "e": '[{"t": "event", "mark": "m"}]'})
    assert written == [{"t": "event", "mark": "m"}]


async def test_counters_and_calls_in_flight_come_back_from_one_snapshot_of_the_ledger(
    open_redis_store: Callable[..., RedisStore], clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another worker's reservation reaching PostgreSQL in the middle of a rebuild's reads
    is either in both the counters and the calls in flight, or in neither: never held by
    a call the counters do not count (admitting past the cap, then reserved < 0)."""
    store = open_redis_store(clock)
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.01,
                                                                   "period": "day"}]}))
    durable = store.durable
    write, read_pending = durable.apply_wal, durable.pending_rows
    late: list[dict[str, object]] = []

    async def held_back(entries: list[dict[str, object]]) -> None:
        late.extend(entries)

    async def landing_meanwhile() -> list[dict[str, object]]:
        await write(late)  # committed by another connection, after the counters' reads
        return await read_pending()

    monkeypatch.setattr(durable, "apply_wal", held_back)
    in_flight = await store.reserve(ticket(secret, 3_000))
    await store.wal.flush()
    assert late, "the reservation's ledger entry was held back"
    monkeypatch.setattr(durable, "apply_wal", write)
    monkeypatch.setattr(durable, "pending_rows", landing_meanwhile)
    await empty_redis(store)
    third = await store.reserve(ticket(secret, 1_000))  # rebuilt first, then decided
    await store.settle(Outcome(in_flight.id, 200, cost_micros=3_000))
    await store.settle(Outcome(third.id, 200, cost_micros=1_000))
    line = await budget_line(store, "agent:bot", "day")
    assert line["reserved_usd"] == "0", line
