"""Leases measure the worker, not the store: time in which no heartbeat of any worker
reached Redis (paused, unreachable) ages no heartbeat and no lease; a worker whose own
heartbeats stop while others' arrive is reaped after 5 s, learns it when it comes back,
and its own settlement of what was reaped is not applied again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, Reaped, StateError
from outlay.state.open import store_from_url
from outlay.state.redis.scripts import script_text
from outlay.state.redis.store import RedisStore

from ...servers.redis import RedisServer
from ..support import Clock, budget_line, charged, ledger_cost, sent, ticket

MakeStore = Callable[..., RedisStore]


@pytest.fixture
async def make_store(redis_url: str, postgres_dsn: str, clock: Clock
                     ) -> AsyncIterator[MakeStore]:
    opened: list[RedisStore] = []

    async def make(**options: object) -> RedisStore:
        store = store_from_url(redis_url, database=postgres_dsn, rebuild_grace_s=0.0,
                               clock=clock, **options)
        assert isinstance(store, RedisStore)
        opened.append(store)
        await store.open()
        return store

    yield make  # type: ignore[misc]
    for store in opened:
        await store.close()


async def capped(store: RedisStore) -> str:
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}]}))
    return secret


async def beating(clock: Clock, seconds: int, *stores: RedisStore) -> None:
    """`seconds` of wall time in which these workers' heartbeats reach the store."""
    for _ in range(seconds):
        clock.advance(1)
        for store in stores:
            await store.heartbeat()


async def test_a_pause_of_the_store_ages_no_heartbeat(make_store: MakeStore, clock: Clock
                                                      ) -> None:
    one, other = await make_store(), await make_store()
    secret = await capped(one)
    held = await other.reserve(ticket(secret, 6_000))
    clock.advance(8)  # Redis stopped for 8 s: no heartbeat got through
    await one.heartbeat()  # of those 8 s, the first 2 count (a heartbeat may be that late)
    assert await one.reap() == []
    await beating(clock, 2, one)  # `other`'s heartbeat is now 4 s old: not yet dead
    assert await one.reap() == []
    assert await other.settle(Outcome(held.id, 200, cost_micros=1_000))


async def test_a_worker_silent_while_others_beat_is_reaped_after_5_s(
    make_store: MakeStore, clock: Clock
) -> None:
    one, other = await make_store(), await make_store()
    secret = await capped(one)
    await sent(other, await other.reserve(ticket(secret, 6_000)))
    await beating(clock, 5, one)
    assert await one.reap() == []
    await beating(clock, 1, one)
    assert await one.reap() == [Reaped(other.worker, charged=1, micros=6_000)]


async def test_a_lease_is_measured_on_the_store_s_clock(make_store: MakeStore, clock: Clock
                                                        ) -> None:
    store = await make_store(lease_s=10)
    secret = await capped(store)
    await sent(store, await store.reserve(ticket(secret, 6_000)))
    clock.advance(30)  # paused for 30 s: the lease has 8 s left on the store's clock
    await store.heartbeat()
    assert await store.reap() == []
    await beating(clock, 7, store)
    assert await store.reap() == []
    await beating(clock, 1, store)
    assert charged(await store.reap()) == 1


async def test_a_worker_declared_dead_learns_it_and_settles_nothing_twice(
    make_store: MakeStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    one, other = await make_store(), await make_store()
    secret = await capped(one)
    held = await sent(other, await other.reserve(ticket(secret, 6_000)))
    await beating(clock, 6, one)  # `other` cut off from Redis, not dead
    assert charged(await one.reap()) == 1
    caplog.set_level(logging.WARNING, "outlay.state")
    await other.heartbeat()  # back
    assert any("was declared dead" in r.getMessage() for r in caplog.records)
    assert not await other.settle(Outcome(held.id, 200, cost_micros=1_000))
    line = await budget_line(one, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.006", "0")
    assert await ledger_cost(one) == 6_000
    caplog.clear()
    await other.heartbeat()
    assert not caplog.records, "told once"


async def test_the_heartbeat_fences_a_state_written_on_another_process(
    redis_server: RedisServer, redis_url: str
) -> None:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    beat = client.register_script(script_text("beat.lua"))
    try:
        await client.hset("b:m", mapping={"ready": "1", "run": "another"})
        ready, now, reaped = await beat(keys=["b:m", "b:w", "b:r"], args=["1000", "w1", 2000])
        assert (ready, now, reaped) == (0, 1000, 0)
        assert await client.hget("b:m", "stale") == "another"
        assert not await client.hexists("b:m", "ready")
        # a gap of 5 s between heartbeats: 3 s of it the store was not there
        assert (await beat(keys=["b:m", "b:w", "b:r"], args=["6000", "w1", 2000]))[1] == 3000
        assert await client.zscore("b:w", "w1") == 3000
    finally:
        await client.delete("b:m", "b:w", "b:r")
        await client.aclose()



async def rebuilt(store: RedisStore) -> None:
    """The state forgotten (a Redis restored from a snapshot), then rebuilt by `store`
    from the ledger; at most a few tries while a rebuild it asked for runs."""
    await store.redis.hdel(store.names.meta, "ready")
    for _ in range(100):
        try:
            await store.heartbeat()
        except StateError:
            await asyncio.sleep(0.02)
            continue
        if await store.redis.hexists(store.names.meta, "ready"):
            return
    raise AssertionError("the state was not rebuilt")


async def test_a_worker_first_heard_from_by_its_reservation_on_a_rebuilt_state_is_alive(
    make_store: MakeStore, clock: Clock
) -> None:
    """A worker with no call in flight when the state is rebuilt is not in it until its
    next heartbeat; a call it reserves meanwhile is its own to settle, not reaped."""
    one, other = await make_store(), await make_store()
    secret = await capped(one)
    await rebuilt(one)
    held = await other.reserve(ticket(secret, 6_000))  # before its next heartbeat
    assert await one.reap() == []
    assert await other.settle(Outcome(held.id, 200, cost_micros=1_000))
    assert await ledger_cost(one) == 1_000


async def test_the_reaper_s_judgement_of_a_forgotten_state_is_not_kept(
    make_store: MakeStore, clock: Clock
) -> None:
    """The reaper judged a worker dead on a state that turned out to be forgotten (its
    settlement finds the state not ready): nothing of that judgement is applied to the
    rebuilt state, in which the worker's call is back and the worker alive."""
    one, other = await make_store(), await make_store()
    secret = await capped(one)
    held = await sent(other, await other.reserve(ticket(secret, 6_000)))
    await beating(clock, 6, one)
    await one.redis.hdel(one.names.meta, "ready")  # Redis restored meanwhile
    assert await one.reap() == []
    await rebuilt(one)
    assert one.settlement_retries().waiting == 0
    assert await one.reap() == []
    assert await other.settle(Outcome(held.id, 200, cost_micros=1_000))
    line = await budget_line(one, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.001", "0")
    assert await ledger_cost(one) == 1_000
