"""The embedded store's long reads (reports, a scope's spend, the audit) run on a connection
of their own in a thread: the event loop decides calls while they run, and a failing read
is a StateError like any other."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from outlay.state import ledger_sql
from outlay.state.base import Outcome, StateError
from outlay.state.sqlite.store import SqliteStore

from ..support import Clock, ticket
from .test_ledger_moves import open_bot


@pytest.mark.parametrize("read", ["report", "usage", "audit"])
async def test_calls_are_decided_while_a_long_read_runs(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    store, secret = await open_bot(tmp_path / "outlay.db", clock)
    started, release = threading.Event(), threading.Event()
    slow_one = {"report": "report", "usage": "spend_by", "audit": "audit"}[read]
    real = getattr(ledger_sql, slow_one)

    def slow(*args: Any) -> Any:
        started.set()
        release.wait(10)  # as a scan of a long ledger would take
        return real(*args)

    monkeypatch.setattr(ledger_sql, slow_one, slow)
    try:
        reading = asyncio.create_task(
            store.report("agent", None) if read == "report" else
            store.usage("agent:bot") if read == "usage" else store.audit(None, 10))
        assert await asyncio.to_thread(started.wait, 10)
        held = await asyncio.wait_for(store.reserve(ticket(secret, 1_000)), 2)
        assert await asyncio.wait_for(store.settle(Outcome(held.id, 200, cost_micros=500)), 2)
        assert not reading.done()
        release.set()
        assert await asyncio.wait_for(reading, 10) is not None
    finally:
        release.set()
        await store.close()


async def test_a_failing_read_is_a_state_error(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = await open_bot(tmp_path / "outlay.db", clock)
    try:
        monkeypatch.setattr(ledger_sql, "GROUP_BY", {**ledger_sql.GROUP_BY,
                                                    "agent": "no_such_column"})
        with pytest.raises(StateError, match="no_such_column"):
            await store.report("agent", None)
        monkeypatch.undo()
        assert await store.report("agent", None) == []  # the connection still serves
    finally:
        await store.close()


async def test_an_in_memory_store_reads_on_its_one_connection(clock: Clock) -> None:
    store = SqliteStore(":memory:", clock=clock)
    await store.open()
    try:
        assert await store.report("agent", None) == []
        assert await store.audit(None, 5) == []
    finally:
        await store.close()
