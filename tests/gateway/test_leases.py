"""A long call keeps its reservation: the worker renews the lease of every LLM call still
running past half of it, so no reaper charges a live stream in full or frees its slot."""

from __future__ import annotations

import asyncio
from typing import Any

from outlay.gateway.context import Flight, Streams

from .fakes import (
    CHAT,
    SSE_HEADERS,
    Outlay,
    Reply,
    openai_stream,
    read_at_least,
    read_rest,
)

LEASE_S = 900  # Settings' and the store's default


def lease_of(outlay: Outlay, request_id: str) -> int | None:
    row = outlay.store.conn.execute("SELECT lease_ms FROM reservations WHERE id=?",
                                    (request_id,)).fetchone()
    return None if row is None else int(row[0])


async def test_a_stream_running_past_its_lease_is_settled_not_reaped(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 10}], "max_parallel": 1})
    chunks = openai_stream()
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    assert await read_at_least(resp, len(chunks[0])) == chunks[0]
    rid = resp.headers["X-Outlay-Request-Id"]
    first = lease_of(outlay, rid)
    assert first is not None
    outlay.clock.advance(LEASE_S / 2)
    for _ in range(150):  # up to 3 s: the worker's upkeep runs every second
        if lease_of(outlay, rid) != first:
            break
        await asyncio.sleep(0.02)
    assert lease_of(outlay, rid) == first + LEASE_S // 2 * 1000
    outlay.clock.advance(LEASE_S / 2 + 1)  # past the first lease
    await outlay.store.heartbeat()  # as the upkeep does before it reaps: the worker lives
    assert await outlay.store.reap() == []
    assert (await outlay.chat(key["key"])).status == 429  # its slot is still taken
    outlay.upstream.release.set()
    await read_rest(resp)
    outcome = await outlay.store.wait_settled(rid)
    assert outcome.settled == "settled"
    entry = next(e for e in await outlay.audit() if e["request_id"] == rid)
    assert entry["settlement"] == "settled"
    assert entry["cost_usd"] != entry["reserved_usd"]


async def test_due_names_running_calls_past_half_their_lease_once_a_half() -> None:
    streams = Streams()

    async def forever() -> None:
        await asyncio.Event().wait()

    running = asyncio.create_task(forever())
    finished = asyncio.create_task(asyncio.sleep(0))
    await finished
    try:
        streams.add("key_a", running, Flight(None, "req_running", 0))
        streams.add("key_a", finished, Flight(None, "req_finished", 0))
        streams.add("key_b", asyncio.current_task() or running, Flight(None, "req_young", 600))
        assert streams.due(499, 1000) == []
        assert streams.due(500, 1000) == ["req_running"]
        assert streams.due(999, 1000) == []  # renewed at 500: not due again before 1000
        assert streams.due(1000, 1000) == ["req_running"]
        assert streams.due(1100, 1000) == ["req_young"]
    finally:
        running.cancel()
