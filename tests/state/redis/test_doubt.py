"""Calls whose decision was lost in transit: a reservation script that ran in a paused Redis
after its caller was answered 503 is voided as soon as Redis answers again, never charged;
a void that comes first makes the late script refuse; a settlement whose answer was lost
still reaches the ledger; and a dead worker's reservation of a call it answered 503 is
voided by the reaper, not charged in full."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, Reaped, StateError
from outlay.state.open import store_from_url
from outlay.state.redis.store import RedisStore

from ...servers.redis import RedisServer
from ..support import Clock, budget_line, ticket

MakeStore = Callable[..., RedisStore]
TIMEOUT_S = 0.3


@pytest.fixture
async def make_store(own_redis_server: RedisServer, postgres_dsn: str
                     ) -> AsyncIterator[MakeStore]:
    opened: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        store = store_from_url(own_redis_server.url, database=postgres_dsn,
                               rebuild_grace_s=0.0, timeout_s=TIMEOUT_S, **options)
        assert isinstance(store, RedisStore)
        opened.append(store)
        return store

    yield make
    own_redis_server.resume()  # never leave it paused for the closing stores
    for store in opened:
        await store.close()


@pytest.fixture
async def raw(own_redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def wait_for_field(raw: Redis, key: str, field: str) -> None:
    for _ in range(100):  # up to 2 s: the resumed server runs what queued first
        if await raw.hexists(key, field):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{key} never got {field}")


async def opened_with_a_cap(store: RedisStore) -> str:
    await store.open()
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}]}))
    warm = await store.reserve(ticket(secret, 0))  # key and policies cached
    await store.settle(Outcome(warm.id, 200))
    return secret


async def reserve_while_paused(store: RedisStore, server: RedisServer, secret: str,
                               cost: int) -> str:
    """A reservation sent to a paused Redis: answered StateError (503) after the socket
    timeout; its script still runs once the server resumes."""
    doomed = ticket(secret, cost)
    server.pause()
    try:
        with pytest.raises(StateError):
            await store.reserve(doomed)
    finally:
        server.resume()
    return doomed.request_id


async def test_a_reservation_answered_503_by_a_paused_redis_is_voided_when_it_resumes(
    make_store: MakeStore, own_redis_server: RedisServer, raw: Redis
) -> None:
    store = make_store()
    secret = await opened_with_a_cap(store)
    request_id = await reserve_while_paused(store, own_redis_server, secret, 6_000)
    await wait_for_field(raw, store.names.reservation(request_id), "rec")  # it ran, late
    line = await budget_line(store, "global", "month")
    assert line["reserved_usd"] == "0.006"  # a call nobody will make holds $0.006

    await store.heartbeat()  # Redis answers again: voided

    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0")
    rows = {r["request_id"]: r for r in await store.audit(None, 10)}
    row = rows[request_id]
    assert (row["status"], row["cost_usd"]) == (503, "0")
    assert row["settlement"] in ("none", "void")
    assert await raw.zrange(store.names.leases, 0, -1) == []
    await store.reserve(ticket(secret, 10_000))  # the whole cap is there to spend


async def test_a_void_that_comes_before_the_late_script_makes_it_refuse(
    make_store: MakeStore, raw: Redis
) -> None:
    store = make_store()
    secret = await opened_with_a_cap(store)
    late = ticket(secret, 6_000)
    store._in_doubt(late, None, store.clock())  # its answer was lost, its script not run yet
    await store._void_doubtful()
    assert await raw.hgetall(store.names.reservation(late.request_id)) == {"void": "1"}
    with pytest.raises(StateError, match="lost in transit"):
        await store.reserve(late)  # the script, run at last: it holds nothing
    line = await budget_line(store, "global", "month")
    assert line["reserved_usd"] == "0"
    await store.heartbeat()  # voided again (idempotent): the marker stays
    assert await raw.hgetall(store.names.reservation(late.request_id)) == {"void": "1"}
    assert 0 < await raw.pttl(store.names.reservation(late.request_id)) <= 86_400_000


async def test_a_settlement_whose_answer_was_lost_still_reaches_the_ledger(
    make_store: MakeStore, own_redis_server: RedisServer, raw: Redis
) -> None:
    store = make_store()
    secret = await opened_with_a_cap(store)
    held = await store.reserve(ticket(secret, 6_000))
    own_redis_server.pause()
    try:
        with pytest.raises(StateError):
            await store.settle(Outcome(held.id, 200, cost_micros=2_500))
    finally:
        own_redis_server.resume()
    for _ in range(100):  # the settlement runs once the server resumes
        if not await raw.exists(store.names.reservation(held.id)):
            break
        await asyncio.sleep(0.02)

    await store.heartbeat()  # kept, applied again: already done, so its stream entry counts

    rows = {r["request_id"]: r for r in await store.audit(None, 10)}
    assert (rows[held.id]["settlement"], rows[held.id]["cost_usd"]) == ("settled", "0.0025")
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.0025", "0")


async def test_a_dead_workers_reservation_it_answered_503_is_voided_by_the_reaper(
    make_store: MakeStore, own_redis_server: RedisServer, raw: Redis, clock: Clock
) -> None:
    doomed = make_store(clock=clock, pause_after_s=86_400.0)
    secret = await opened_with_a_cap(doomed)
    request_id = await reserve_while_paused(doomed, own_redis_server, secret, 6_000)
    await doomed.wal.flush()  # its ledger row (refused, 503) reaches PostgreSQL
    await wait_for_field(raw, doomed.names.reservation(request_id), "rec")
    doomed._doubtful.clear()  # the worker dies before Redis answers it again
    survivor = make_store(clock=clock, pause_after_s=86_400.0)
    await survivor.open()
    clock.advance(6)
    await survivor.heartbeat()

    assert await survivor.reap() == [Reaped(doomed.worker, voided=1)]

    line = await budget_line(survivor, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0")
    rows = {r["request_id"]: r for r in await survivor.audit(None, 10)}
    assert (rows[request_id]["status"], rows[request_id]["cost_usd"]) == (503, "0")


async def test_calls_in_doubt_are_kept_while_redis_is_away_and_voided_after(
    make_store: MakeStore, own_redis_server: RedisServer, raw: Redis
) -> None:
    store = make_store()
    secret = await opened_with_a_cap(store)
    request_id = await reserve_while_paused(store, own_redis_server, secret, 6_000)
    await wait_for_field(raw, store.names.reservation(request_id), "rec")
    own_redis_server.pause()
    try:
        with pytest.raises(StateError):
            await store.heartbeat()  # Redis away again: nothing voided, nothing forgotten
        with pytest.raises(StateError):
            await store._after_outage()  # the voiding itself meets it away
    finally:
        own_redis_server.resume()
    assert request_id in store._doubtful
    for _ in range(3):  # the first may meet the connection the timeout closed
        try:
            await store.heartbeat()
            break
        except StateError:
            continue
    assert not store._doubtful
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0")
