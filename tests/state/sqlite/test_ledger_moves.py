"""The embedded store writes an admitted call's ledger row into its reservation, and moves
the settled ones into the ledger in batches: every read sees both, in the order of the
decisions, and neither a crash nor a restart loses or doubles a row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from outlay.policy.errors import OutlayError
from outlay.policy.model import parse_policy
from outlay.policy.money import micros_to_usd
from outlay.state.base import NewKey, Outcome, StateError
from outlay.state.ledger_sql import DROP_MOVED, MOVE_SETTLED, audit
from outlay.state.sqlite import mirror
from outlay.state.sqlite.mirror import MOVE_ROWS
from outlay.state.sqlite.schema import apply
from outlay.state.sqlite.store import SqliteStore

from ..support import Clock, charged, eventually, sent, ticket


def rows_in(path: Path) -> tuple[int, int]:
    """Allowed rows in the ledger table itself, and rows still in reservations."""
    conn = sqlite3.connect(path)
    try:
        in_ledger = conn.execute(
            "SELECT COUNT(*) FROM ledger WHERE decision='allowed'").fetchone()[0]
        held = conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
        return in_ledger, held
    finally:
        conn.close()


async def open_bot(path: Path, clock: Clock, usd: float = 10.0) -> tuple[SqliteStore, str]:
    store = SqliteStore(str(path), clock=clock)
    await store.open()
    await store.create_agent("bot", None)
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": usd}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    return store, secret


async def audit_after_reopen(path: Path, clock: Clock) -> list[str]:
    """The request ids of the audit, newest first, as a store opened afresh reads them."""
    store = SqliteStore(str(path), clock=clock)
    await store.open()
    try:
        return [r["request_id"] for r in await store.audit(None, 10)]
    finally:
        await store.close()


@pytest.fixture(autouse=True)
def moves_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows move every MOVE_ROWS settlements (or on closing) only, not also MOVE_S after
    the last move: on a loaded machine the tests here would see rows moved before they
    count them."""
    monkeypatch.setattr(mirror, "MOVE_S", 3600.0)


async def settle_calls(store: SqliteStore, secret: str, n: int) -> list[str]:
    """`n` calls reserved and settled one after the other; their ids."""
    ids = []
    for _ in range(n):
        held = await store.reserve(ticket(secret, 2_000))
        assert await store.settle(Outcome(held.id, 200, cost_micros=1_000))
        ids.append(held.id)
    return ids


async def test_settled_rows_wait_in_their_reservations_then_move_together(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    try:
        ids = await settle_calls(store, secret, 3)
        assert rows_in(path) == (0, 3)
        # every read already sees them, newest first
        audit = await store.audit(None, 10)
        assert [r["request_id"] for r in audit] == ids[::-1]
        assert {(r["settlement"], r["cost_usd"]) for r in audit} == {("settled", "0.001")}
        (line,) = await store.report("agent", None)
        assert (line["requests"], line["allowed"], line["cost_usd"]) == (3, 3, "0.003")
        await settle_calls(store, secret, MOVE_ROWS)
        in_ledger, held_rows = rows_in(path)
        assert in_ledger >= MOVE_ROWS
        assert in_ledger + held_rows == MOVE_ROWS + 3
        (line,) = await store.report("agent", None)
        assert (line["requests"], line["cost_usd"]) == (
            MOVE_ROWS + 3, micros_to_usd((MOVE_ROWS + 3) * 1_000))
    finally:
        await store.close()
    assert rows_in(path) == (MOVE_ROWS + 3, 0)  # closing moves the rest


async def test_the_ledger_keeps_the_order_of_the_decisions(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock, usd=0.003)
    try:
        first = await store.reserve(ticket(secret, 2_000))
        with pytest.raises(OutlayError):  # over the budget while the first is held
            await store.reserve(ticket(secret, 2_000, request_id="req_refused"))
        second = await store.reserve(ticket(secret, 1_000))
        # settled in the other order, and only then moved
        assert await store.settle(Outcome(second.id, 200, cost_micros=500))
        assert await store.settle(Outcome(first.id, 200, cost_micros=500))
        expected = [second.id, "req_refused", first.id]
        assert [r["request_id"] for r in await store.audit(None, 10)] == expected
        assert [r["request_id"] for r in await store.audit(None, 2)] == expected[:2]
    finally:
        await store.close()
    assert rows_in(path) == (2, 0)
    assert await audit_after_reopen(path, clock) == expected
    conn = sqlite3.connect(path)
    seqs = [s for (s,) in conn.execute("SELECT seq FROM ledger ORDER BY seq")]
    conn.close()
    assert len(set(seqs)) == 3


def test_the_audit_merges_held_and_recorded_rows_by_the_time_of_their_decision() -> None:
    """Newest first by the time of the decision, whichever table a row is in; rows of the
    same millisecond in the order they were numbered."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    apply(conn)
    t0 = 1_710_417_600_000
    conn.executemany("INSERT INTO ledger(seq, request_id, ts_ms, decision, settlement) "
                     "VALUES (?, ?, ?, 'refused', 'none')",
                     [(2, "req_early", t0 + 1), (3, "req_same_ms_later", t0 + 5)])
    conn.execute("INSERT INTO reservations(id, created_ms, lease_ms, worker, amount, tokens, "
                 "holds, tpm, parallel, seq) VALUES ('req_held', ?, ?, 'w', 10, 1, '[]', "
                 "'[]', '[]', 1)", (t0 + 5, t0 + 900_000))
    newest = ["req_same_ms_later", "req_held", "req_early"]
    assert [e["request_id"] for e in audit(conn, None, 10)] == newest
    assert [e["request_id"] for e in audit(conn, None, 2)] == newest[:2]
    conn.close()


async def test_a_move_takes_the_forwarded_marks_of_the_rows_it_moves_only(
        tmp_path: Path, clock: Clock) -> None:
    """The marks of moved calls go with them; those of calls still in flight stay, and the
    reaper charges those calls (sent) and voids the one never marked. (Marks in the
    database, as when the worker's mark files cannot be written.)"""
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    assert store._marks is not None
    store._marks.disable()
    try:
        done = [await sent(store, await store.reserve(ticket(secret, 1_000))) for _ in range(3)]
        flying = await sent(store, await store.reserve(ticket(secret, 2_000)))
        unsent = await store.reserve(ticket(secret, 4_000))
        for held in done:
            assert await store.settle(Outcome(held.id, 200, cost_micros=500))
        store._mirror.move_now()
        await store.settle(Outcome("req_none", 200, cost_micros=1))  # a batch that moves
        assert rows_in(path) == (3, 2)
        conn = sqlite3.connect(path)
        marked = [rid for (rid,) in conn.execute(
            "SELECT id FROM reservations JOIN forwarded_calls USING (seq)")]
        assert (marked, conn.execute("SELECT COUNT(*) FROM forwarded_calls").fetchone()) == (
            [flying.id], (1,))
        conn.close()
        clock.advance(store.lease_ms / 1000 + 1)  # both leases run out
        reaped = await store.reap()
        assert [(r.charged, r.micros, r.voided) for r in reaped] == [(1, 2_000, 1)]
        assert rows_in(path) == (3, 2)  # settled by the reaper, moved with the next move
        assert not await store.settle(Outcome(unsent.id, 200, cost_micros=1))
    finally:
        await store.close()


async def test_a_crash_keeps_settled_rows_settled_and_reaps_the_pending(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    settled = await store.reserve(ticket(secret, 2_000))
    assert await store.settle(Outcome(settled.id, 200, cost_micros=700))
    pending = await sent(store, await store.reserve(ticket(secret, 3_000)))
    # the process dies: nothing closed, nothing moved
    assert store._checkpointer is not None
    store._checkpointer.stop()
    store.conn.close()
    store._conn = None
    assert rows_in(path) == (0, 2)

    clock.advance(60)  # the dead worker's heartbeat is stale
    store = SqliteStore(str(path), clock=clock)
    await store.open()
    try:
        # the pending call, charged in full; not the settled
        assert charged(await store.reap()) == 1
        rows = {r["request_id"]: r for r in await store.audit(None, 10)}
        assert (rows[settled.id]["settlement"], rows[settled.id]["cost_usd"]) == (
            "settled", "0.0007")
        assert (rows[pending.id]["settlement"], rows[pending.id]["cost_usd"]) == (
            "unsettled", "0.003")
        assert not await store.settle(Outcome(settled.id, 200, cost_micros=1))
        budget = (await store.usage("agent:bot"))["budgets"][0]
        assert (budget["spent_usd"], budget["reserved_usd"]) == ("0.0037", "0")
        # the new worker numbers its calls after the rows the dead one left unmoved
        (newest,) = await settle_calls(store, secret, 1)
        audit = [r["request_id"] for r in await store.audit(None, 10)]
        assert audit == [newest, pending.id, settled.id]
    finally:
        await store.close()
    assert rows_in(path) == (3, 0)


async def test_two_workers_number_their_rows_apart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    one, secret = await open_bot(path, clock)
    two = SqliteStore(str(path), clock=clock)
    await two.open()
    try:
        first = await one.reserve(ticket(secret, 1_000))
        second = await two.reserve(ticket(secret, 1_000))
        third = await one.reserve(ticket(secret, 1_000))
        for store, held in ((two, second), (one, first), (one, third)):
            assert await store.settle(Outcome(held.id, 200, cost_micros=500))
        expected = [third.id, second.id, first.id]
        assert [r["request_id"] for r in await two.audit(None, 10)] == expected
    finally:
        await two.close()
        await one.close()
    assert rows_in(path) == (3, 0)
    assert await audit_after_reopen(path, clock) == expected


async def test_a_budget_put_mid_period_counts_rows_not_yet_moved(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    try:
        done = await store.reserve(ticket(secret, 2_000))
        assert await store.settle(Outcome(done.id, 200, cost_micros=1_200))
        await store.reserve(ticket(secret, 3_000))  # in flight
        assert rows_in(path) == (0, 2)
        await store.put_policy("agent:bot", parse_policy(
            {"budgets": [{"usd": 10}, {"usd": 5, "period": "day"}]}))
        lines = {b["period"]: b for b in (await store.usage("agent:bot"))["budgets"]}
        assert (lines["day"]["spent_usd"], lines["day"]["reserved_usd"]) == ("0.0012", "0.003")
        assert (await store.usage("agent:bot"))["spend_by_model"] == {"gpt-4o-mini": "0.0012"}
    finally:
        await store.close()


async def test_a_move_that_fails_is_kept_and_applied_again_once(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    try:
        await settle_calls(store, secret, MOVE_ROWS - 1)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("CREATE TRIGGER boom BEFORE INSERT ON ledger "
                    "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
        last = await store.reserve(ticket(secret, 2_000))
        with pytest.raises(StateError):  # its settlement makes the batch move, and fail
            await store.settle(Outcome(last.id, 200, cost_micros=1_000))
        assert rows_in(path) == (0, MOVE_ROWS)
        raw.execute("DROP TRIGGER boom")
        raw.close()
        # kept, and applied again by itself: once
        await eventually(lambda: not store.settlement_retries().waiting)
        assert not await store.settle(Outcome(last.id, 200, cost_micros=1_000))
        assert rows_in(path) == (MOVE_ROWS, 0)
        (line,) = await store.report("agent", None)
        assert (line["requests"], line["cost_usd"]) == (MOVE_ROWS, micros_to_usd(MOVE_ROWS * 1_000))
    finally:
        await store.close()


@pytest.mark.parametrize("read", ["audit", "report", "usage"])
async def test_a_move_by_another_worker_between_two_reads_hides_no_row(
        tmp_path: Path, clock: Clock, read: str) -> None:
    path = tmp_path / "outlay.db"
    store, secret = await open_bot(path, clock)
    try:
        (rid,) = await settle_calls(store, secret, 1)
        assert rows_in(path) == (0, 1)
        # the trace runs in the thread of the reads: the other worker's connection goes there
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        moved = []

        def move_before_the_second_read(sql: str) -> None:
            # another worker moves the settled rows just as this one turns to reservations
            if not moved and "FROM reservations" in sql and "FROM ledger" not in sql:
                other.execute("BEGIN IMMEDIATE")
                other.execute(MOVE_SETTLED)
                for drop in DROP_MOVED:
                    other.execute(drop)
                other.execute("COMMIT")
                moved.append(sql)

        await store.audit(None, 1)  # opens the connection of the reads
        reads = reader_connection(store)
        reads.set_trace_callback(move_before_the_second_read)
        try:
            if read == "audit":
                assert [r["request_id"] for r in await store.audit(None, 10)] == [rid]
            elif read == "report":
                (line,) = await store.report("agent", None)
                assert (line["requests"], line["cost_usd"]) == (1, "0.001")
            else:
                usage = await store.usage("agent:bot")
                assert usage["spend_by_model"] == {"gpt-4o-mini": "0.001"}
        finally:
            reads.set_trace_callback(None)
            other.close()
        assert moved, "the reads never reached the reservations"
        assert rows_in(path) == (1, 0)
    finally:
        await store.close()


def reader_connection(store: SqliteStore) -> sqlite3.Connection:
    """The connection the store's long reads use (made by its first read)."""
    assert store._reader is not None  # private: the test traces what the reads run
    conn = store._reader._conn
    assert conn is not None
    return conn
