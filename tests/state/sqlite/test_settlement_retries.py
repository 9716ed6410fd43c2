"""The embedded store keeps the settlements it fails to write (the file locked by another
process past the store's patience) and applies them, once, when it can write again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateError
from outlay.state.sqlite.store import SqliteStore

from ..support import Clock, budget_line, eventually, ledger_cost, ticket


async def test_settlements_meeting_a_locked_file_land_once_it_is_free(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store = SqliteStore(str(path), clock=clock, busy_timeout_s=0.05)
    await store.open()
    try:
        await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1}]}))
        _, secret = await store.create_key(NewKey(agent="bot"))
        held = [await store.reserve(ticket(secret, 5_000)) for _ in range(3)]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(StateError, match="locked"):
                await store.settle(Outcome(held[0].id, 200, cost_micros=1_000))
            for h in held[1:]:
                assert store.queue_settlement(Outcome(h.id, 200, cost_micros=2_000))
            await eventually(lambda: store.settlement_retries().waiting == 3)
            await eventually(lambda: store.settlement_retries().retried >= 2)  # tried again
        finally:
            other.execute("ROLLBACK")
            other.close()
        await eventually(lambda: store.settlement_retries().waiting == 0)
        line = await budget_line(store, "agent:bot", "month")
        assert (line["spent_usd"], line["reserved_usd"]) == ("0.005", "0")
        assert await ledger_cost(store) == 5_000
        for h in held:  # each applied once
            assert not await store.settle(Outcome(h.id, 200, cost_micros=9_000))
        assert store.settlement_retries().abandoned == 0
    finally:
        await store.close()
