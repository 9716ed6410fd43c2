"""The ledger writer of the replicated store: entries kept until PostgreSQL has them, whatever
fails meanwhile, and dropped from the worker's Redis stream once written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from outlay.state.base import NewKey, Outcome, StateError
from outlay.state.open import store_from_url
from outlay.state.redis.batch import ScriptBatch
from outlay.state.redis.store import RedisStore
from outlay.state.redis.wal import Wal

from ...servers.redis import RedisServer
from ..support import ticket


class FlakyLedger:
    """Fails its first writes (a PostgreSQL outage, then a bug), then takes everything."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.written: list[dict[str, Any]] = []

    async def apply_wal(self, entries: list[dict[str, Any]]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.written += entries


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    await redis.delete("wal:test")
    yield redis
    await redis.aclose()


async def test_entries_survive_failed_writes_and_leave_the_stream_once_written(
    client: Redis,
) -> None:
    ledger = FlakyLedger([StateError("PostgreSQL is down"), ValueError("a bug")])
    wal = Wal(client, "wal:test", ledger, interval_s=0.01)
    wal.retry_s = 0.01
    wal.start()
    try:
        await wal.append([{"t": "row", "row": {"request_id": "r1"}}])
        await wal.append([{"t": "row", "row": {"request_id": "r2"}}])
        for _ in range(200):  # bounded: 2 s at most
            if len(ledger.written) == 2:
                break
            await asyncio.sleep(0.01)
        assert [e["row"]["request_id"] for e in ledger.written] == ["r1", "r2"]
        assert wal.backlog == 0
        assert await client.xlen("wal:test") == 0
    finally:
        await wal.stop()


@pytest.mark.parametrize("pipelined", [True, False])
async def test_written_entries_leave_the_stream_with_the_scripts_batch(
    client: Redis, pipelined: bool
) -> None:
    # the XDEL goes with the loop turn's scripts (alone, when they are not pipelined)
    ledger = FlakyLedger([])
    batch = ScriptBatch(client, pipelined=pipelined)
    wal = Wal(client, "wal:test", ledger, batch=batch)
    try:
        await wal.append([{"t": "row", "row": {"request_id": "r1"}}])
        await wal.append([{"t": "row", "row": {"request_id": "r2"}}])
        assert await client.xlen("wal:test") == 2
        await wal.flush()
        assert [e["row"]["request_id"] for e in ledger.written] == ["r1", "r2"]
        assert await client.xlen("wal:test") == 0
    finally:
        await batch.close(1.0)


async def test_entries_stay_in_the_stream_when_their_deletion_fails(client: Redis) -> None:
    # written to PostgreSQL all the same: the stream keeps them, to apply again idempotently
    ledger = FlakyLedger([])
    batch = ScriptBatch(client)
    wal = Wal(client, "wal:test", ledger, batch=batch)
    await wal.append([{"t": "row", "row": {"request_id": "r1"}}])

    def unreachable(*words: Any) -> Any:
        raise StateError("Redis unavailable")

    batch.command = unreachable  # type: ignore[method-assign]
    await wal.flush()
    assert wal.backlog == 0
    assert len(ledger.written) == 1
    assert await client.xlen("wal:test") == 1


async def test_an_explicit_flush_reports_the_failure_and_keeps_the_entries(
    client: Redis,
) -> None:
    ledger = FlakyLedger([StateError("PostgreSQL is down")])
    wal = Wal(client, "wal:test", ledger)
    await wal.append([{"t": "row", "row": {"request_id": "r1"}}])
    with pytest.raises(StateError):
        await wal.flush()
    assert wal.backlog == 1
    assert await client.xlen("wal:test") == 1
    await wal.flush()
    assert wal.backlog == 0
    assert ledger.written == [{"t": "row", "row": {"request_id": "r1"}}]


class HangingLedger:
    """A PostgreSQL that accepts the connection and never answers."""

    async def apply_wal(self, entries: list[dict[str, Any]]) -> None:
        await asyncio.sleep(3600)


async def test_stopping_waits_for_postgresql_a_bounded_time_and_keeps_the_stream(
    client: Redis,
) -> None:
    wal = Wal(client, "wal:test", HangingLedger(), interval_s=0.01)
    wal.start()
    await wal.append([{"t": "row", "row": {"request_id": "r1"}}])
    await asyncio.sleep(0.05)  # the writer is now stuck in apply_wal
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wal.stop(timeout_s=0.2)
    assert loop.time() - started < 1.0
    assert wal.backlog == 1
    assert await client.xlen("wal:test") == 1  # left for another worker's reaper to drain


async def test_a_queued_settlement_carries_its_row_unless_this_worker_kept_it(
    redis_url: str, postgres_dsn: str
) -> None:
    # the worker that reserved kept the row's own entry ahead of the settlement's: that
    # settlement's entry is the settlement alone; another worker's carries the row, and
    # lands in PostgreSQL even before the reserving worker writes its own entries
    stores = [store_from_url(redis_url, database=postgres_dsn, rebuild_grace_s=0.0)
              for _ in range(2)]
    mine, other = stores
    for store in stores:
        await store.open()
    try:
        assert isinstance(mine, RedisStore)
        assert isinstance(other, RedisStore)
        mine.wal.interval_s = 3600.0  # its entries stay in its memory (and stream)
        await asyncio.sleep(0.05)
        _, secret = await mine.create_key(NewKey(agent="bot"))
        held = [await mine.reserve(ticket(secret, 5_000)) for _ in range(2)]
        assert mine.queue_settlement(Outcome(held[0].id, 200, cost_micros=1_234))
        assert other.queue_settlement(Outcome(held[1].id, 200, cost_micros=2_000))
        await mine._settled_so_far()
        await other._settled_so_far()
        assert [e["t"] for _, group in mine.wal._pending[-1:] for e in group] == ["settle"]
        await other.wal.flush()
        (row,) = await other.durable.audit(None, 10)
        assert (row["request_id"], row["settlement"], row["cost_usd"]) == (
            held[1].id, "settled", "0.002")
        await mine.wal.flush()
        settled = {r["request_id"]: (r["settlement"], r["cost_usd"])
                   for r in await mine.durable.audit(None, 10)}
        assert settled == {held[0].id: ("settled", "0.001234"),
                           held[1].id: ("settled", "0.002")}
    finally:
        for store in stores:
            await store.close()
