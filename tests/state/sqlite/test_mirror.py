"""The embedded store's in-worker copy of its rows: exact, or dropped and read again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from outlay.policy.errors import AuthError, BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.policy.windows import WindowState, encode
from outlay.state.base import NewKey, Outcome, StateError
from outlay.state.sqlite.mirror import Mirror
from outlay.state.sqlite.schema import apply
from outlay.state.sqlite.store import SqliteStore
from outlay.state.sqlite.windows_sql import WINDOW_START

from ..support import Clock, budget_line, charged, sent, ticket


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore, Clock]]:
    """Two stores on one file: two workers of one installation."""
    clock = Clock()
    one, two = (SqliteStore(str(tmp_path / "o.db"), clock=clock) for _ in range(2))
    await one.open()
    await two.open()
    yield one, two, clock
    await one.close()
    await two.close()


async def test_a_revoke_by_another_worker_holds_at_the_next_call(
    pair: tuple[SqliteStore, SqliteStore, Clock],
) -> None:
    one, two, _ = pair
    record, secret = await one.create_key(NewKey(agent="bot"))
    first = await one.reserve(ticket(secret))  # the key is now in one's mirror
    await two.revoke_key(record.id)
    with pytest.raises(AuthError):
        await one.reserve(ticket(secret))
    assert await one.settle(Outcome(first.id, 200, cost_micros=10))


async def test_a_row_written_by_another_connection_is_read_again(
    pair: tuple[SqliteStore, SqliteStore, Clock], tmp_path: Path
) -> None:
    one, _, _ = pair
    _, secret = await one.create_key(NewKey(agent="bot"))
    await one.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.01}]}))
    await one.reserve(ticket(secret, 4_000))  # counters now in the mirror
    # e.g. an operator's own script: another connection, outside Outlay
    raw = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    raw.execute("UPDATE counters SET spent = spent + 5000 WHERE scope='agent:bot'")
    raw.close()
    with pytest.raises(BudgetExceeded):
        await one.reserve(ticket(secret, 2_000))  # 5_000 + 4_000 + 2_000 > 10_000
    await one.reserve(ticket(secret, 1_000))


async def test_a_policy_changed_in_this_worker_holds_at_the_next_call(
    pair: tuple[SqliteStore, SqliteStore, Clock],
) -> None:
    one, _, _ = pair
    _, secret = await one.create_key(NewKey(agent="bot"))
    await one.reserve(ticket(secret, 4_000))
    await one.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.005}]}))
    with pytest.raises(BudgetExceeded):
        await one.reserve(ticket(secret, 2_000))  # the new budget counts the call in flight


async def test_a_policy_set_by_another_worker_holds_at_the_next_call(
    pair: tuple[SqliteStore, SqliteStore, Clock],
) -> None:
    one, two, _ = pair
    _, secret = await one.create_key(NewKey(agent="bot"))
    await one.reserve(ticket(secret, 4_000))  # the call's scopes' policies now in the mirror
    await two.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 0.005}]}))
    with pytest.raises(BudgetExceeded):
        await one.reserve(ticket(secret, 2_000))
    await two.delete_policy("agent:bot")
    await one.reserve(ticket(secret, 2_000))


async def test_the_rows_on_disk_match_after_every_batch(
    pair: tuple[SqliteStore, SqliteStore, Clock], tmp_path: Path
) -> None:
    one, two, _ = pair
    _, secret = await one.create_key(NewKey(agent="bot"))
    await one.put_policy("agent:bot", parse_policy(
        {"rpm": 1000, "tpm": 10**6, "max_parallel": 50, "budgets": [{"usd": 1}]}))
    held = await asyncio.gather(*(one.reserve(ticket(secret, 1_000, tokens=10))
                                  for _ in range(20)))
    await asyncio.gather(*(one.settle(Outcome(h.id, 200, cost_micros=400, tokens=5))
                           for h in held[:15]))
    # the other worker reads only the file
    line = await budget_line(two, "agent:bot", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.006", "0.005")
    usage = await two.usage("agent:bot")
    limits = {w["name"]: w for w in usage["windows"]}
    assert limits["rpm"]["used"] == 20
    assert limits["tpm"]["used"] == 15 * 5 + 5 * 10
    raw = sqlite3.connect(tmp_path / "o.db")
    assert raw.execute("SELECT n FROM inflight WHERE scope='agent:bot'").fetchone() == (5,)
    assert raw.execute("SELECT COUNT(*) FROM reservations WHERE settlement IS NULL"
                       ).fetchone() == (5,)
    raw.close()


async def test_a_failed_write_fails_its_op_alone_and_leaves_nothing_in_the_mirror(
    pair: tuple[SqliteStore, SqliteStore, Clock], tmp_path: Path
) -> None:
    one, two, _ = pair
    _, secret = await one.create_key(NewKey(agent="bot"))
    await one.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1}]}))
    await one.reserve(ticket(secret, 1_000))
    raw = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    # the reservation's row is written from the mirror at the commit: the failure comes
    # after both ops ran, and the batch is split to find whose row it is
    raw.execute("CREATE TRIGGER boom BEFORE INSERT ON reservations WHEN NEW.id = 'req_boom' "
                "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    good, boom = await asyncio.gather(
        one.reserve(ticket(secret, 1_000)), one.reserve(ticket(secret, 1_000,
                                                               request_id="req_boom")),
        return_exceptions=True)
    assert isinstance(boom, StateError)
    assert "disk trouble" in str(boom)
    assert not isinstance(good, BaseException)
    raw.execute("DROP TRIGGER boom")
    raw.close()
    # nothing of the failed op counts, in this worker's memory or on disk
    await one.reserve(ticket(secret, 1_000))
    for store in (one, two):
        line = await budget_line(store, "agent:bot", "month")
        assert line["reserved_usd"] == "0.003"
    assert [r["request_id"] for r in await one.audit(None, 10)].count("req_boom") == 0
    assert await one.settle(Outcome(good.id, 200, cost_micros=10))
    assert not await one.settle(Outcome("req_boom", 200, cost_micros=10))


async def test_a_locked_store_fails_the_whole_batch_and_writes_nothing(
    tmp_path: Path,
) -> None:
    store = SqliteStore(str(tmp_path / "o.db"), busy_timeout_s=0.05)
    await store.open()
    try:
        _, secret = await store.create_key(NewKey(agent="bot"))
        raw = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")  # another process holds the write lock too long
        results = await asyncio.gather(*(store.reserve(ticket(secret, 1_000))
                                         for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, StateError) for r in results), results
        assert all("locked" in str(r) for r in results)
        raw.execute("ROLLBACK")
        raw.close()
        await store.reserve(ticket(secret, 1_000))
        assert [r["decision"] for r in await store.audit(None, 10)] == ["allowed"]
    finally:
        await store.close()


async def test_a_settlement_reaped_by_another_worker_is_not_applied_again(
    pair: tuple[SqliteStore, SqliteStore, Clock],
) -> None:
    one, two, clock = pair
    _, secret = await one.create_key(NewKey(agent="bot"))
    await one.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1}]}))
    held = await sent(one, await one.reserve(ticket(secret, 1_000)))
    clock.advance(901)  # past the lease: the other worker's reaper charges it in full
    await two.heartbeat()
    assert charged(await two.reap()) == 1
    assert not await one.settle(Outcome(held.id, 200, cost_micros=10))
    line = await budget_line(one, "agent:bot", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.001", "0")


def test_a_counter_or_window_thought_in_the_file_but_gone_is_written_all_the_same() -> None:
    """Rows read from the file are written back by an UPDATE; one deleted meanwhile behind
    the mirror's back (on its own connection: the file's version does not move) is not lost."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    apply(conn)
    conn.execute("INSERT INTO counters(scope, period, period_start, spent, reserved) "
                 "VALUES ('agent:bot', 'month', 0, 5, 6), ('agent:bot', 'day', 0, 1, 2)")
    conn.execute("INSERT INTO counters(scope, period, period_start, state) "
                 "VALUES ('agent:bot', 'rpm', ?, ?)", (WINDOW_START, encode(WindowState(7, (1,)))))
    mirror = Mirror()
    conn.execute("BEGIN IMMEDIATE")
    mirror.begin(conn)
    assert mirror.counter(conn, ("agent:bot", "month", 0)) == [5, 6]
    assert mirror.counter(conn, ("agent:bot", "day", 0)) == [1, 2]
    assert mirror.windows_of(conn, "agent:bot") == {"rpm": WindowState(7, (1,))}
    conn.execute("DELETE FROM counters WHERE period IN ('month', 'rpm')")
    mirror.add_counter(conn, ("agent:bot", "month", 0), 10, -1)
    mirror.add_counter(conn, ("agent:bot", "day", 0), 10, -1)
    mirror.add_counter(conn, ("agent:bot", "week", 0), 3, 4)  # not in the file yet
    mirror.set_window("agent:bot", "rpm", WindowState(7, (2,)))
    mirror.flush(conn)
    conn.execute("COMMIT")
    assert sorted(conn.execute(
        "SELECT period, spent, reserved, state FROM counters ORDER BY period")) == [
        ("day", 11, 1, None), ("month", 15, 5, None), ("rpm", 0, 0, encode(WindowState(7, (2,)))),
        ("week", 3, 4, None)]
    conn.close()
