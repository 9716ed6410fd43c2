"""The ledger writer of the replicated store: entries kept until PostgreSQL has them, whatever
fails meanwhile, and dropped from the worker's Redis stream once written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from outlay.state.base import StateError
from outlay.state.redis.wal import Wal

from ...servers.redis import RedisServer


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
