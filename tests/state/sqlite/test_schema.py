"""The embedded store's schema: a new file, an upgrade from the version before, a newer
file refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from outlay.policy.errors import ApprovalRequired, RateLimited
from outlay.policy.model import parse_policy
from outlay.policy.series import SeriesQuery, series_answer
from outlay.policy.windows import decode
from outlay.state.base import NewKey, Outcome
from outlay.state.ledger_sql import MOVE_SETTLED
from outlay.state.sqlite import schema as sqlite_schema
from outlay.state.sqlite.events_schema import APPROVAL_COLUMNS_V4
from outlay.state.sqlite.marks import read_marks
from outlay.state.sqlite.schema import SCHEMA_VERSION, apply
from outlay.state.sqlite.store import SqliteStore

from ..support import START, Clock, ms, ticket

# the version 1 shapes that version 2 changed
V1_RESERVATIONS = """CREATE TABLE reservations (
  id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, lease_ms INTEGER NOT NULL,
  worker TEXT NOT NULL, amount INTEGER NOT NULL, tokens INTEGER NOT NULL,
  holds TEXT NOT NULL, tpm TEXT NOT NULL, parallel TEXT NOT NULL
)"""
V1_LEDGER_GRP = "CREATE INDEX ledger_grp ON ledger(grp, ts_ms)"
V4_IDEMPOTENCY = """CREATE TABLE idempotency (
  key_id TEXT NOT NULL, vendor TEXT NOT NULL, idem TEXT NOT NULL, request_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL, PRIMARY KEY (key_id, vendor, idem)
)"""


def shape(conn: sqlite3.Connection, name: str) -> str:
    return str(conn.execute("SELECT sql FROM sqlite_schema WHERE name=?", (name,)).fetchone()[0])


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()[0])


def drop_v4_columns(conn: sqlite3.Connection) -> None:
    """The shapes before version 4 (and 5, 6 and 7): approvals without their breaches, expiry
    and use, ledger rows without what they replay, their waits and refusals' figures,
    reservations without whether they were forwarded, idempotency keys by Outlay key."""
    for column in APPROVAL_COLUMNS_V4:
        conn.execute(f"ALTER TABLE approvals DROP COLUMN {column.split()[0]}")
    for table in ("ledger", "reservations"):
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column in ("replay_of", "waited_ms", "held", "estimated", "forwarded"):
            if column in present:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute(V4_IDEMPOTENCY)


def downgrade_to_v1(path: Path) -> None:
    """Give a file the shapes, the rows and the version Outlay 1 left: a call in flight had
    its pending row in the ledger and a reservation of nine columns."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO ledger(seq, request_id, ts_ms, key_id, agent, grp, labels, vendor, model, "
        "route, decision, code, scope, status, reserved, cost, settlement, spent, cap) "
        "SELECT seq, id, created_ms, key_id, agent, grp, labels, vendor, model, route, "
        "'allowed', code, NULL, NULL, amount, 0, 'pending', spent, cap FROM reservations "
        "WHERE settlement IS NULL")
    conn.execute(MOVE_SETTLED)
    conn.execute("ALTER TABLE reservations RENAME TO current")
    conn.execute(V1_RESERVATIONS)
    conn.execute("INSERT INTO reservations SELECT id, created_ms, lease_ms, worker, amount, "
                 "tokens, holds, tpm, parallel FROM current WHERE settlement IS NULL")
    conn.execute("DROP TABLE current")
    conn.execute("DROP INDEX ledger_grp")
    conn.execute(V1_LEDGER_GRP)
    drop_v4_columns(conn)
    conn.execute("UPDATE meta SET v='1' WHERE k='schema_version'")
    assert "WITHOUT ROWID" not in shape(conn, "reservations")
    conn.close()


def test_a_new_file_has_the_current_shapes(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "outlay.db", isolation_level=None)
    apply(conn)
    assert version(conn) == SCHEMA_VERSION == 11
    assert "estimated INTEGER" in shape(conn, "ledger")
    assert "forwarded INTEGER" in shape(conn, "reservations")
    assert "flow TEXT" in shape(conn, "ledger")
    assert "flow TEXT" in shape(conn, "reservations")
    assert "waited_ms INTEGER" in shape(conn, "reservations")
    assert "replay_of TEXT" in shape(conn, "ledger")
    assert "replay_of TEXT" in shape(conn, "reservations")
    assert "PRIMARY KEY (vendor, account, idem)" in shape(conn, "replays")
    assert "WITHOUT ROWID" in shape(conn, "reservations")
    assert "settlement TEXT" in shape(conn, "reservations")
    assert "WHERE grp IS NOT NULL" in shape(conn, "ledger_grp")
    assert "state BLOB" in shape(conn, "counters")
    assert conn.execute("SELECT 1 FROM sqlite_schema WHERE name='windows'").fetchone() is None
    assert "seq INTEGER PRIMARY KEY" in shape(conn, "forwarded_calls")
    conn.close()


async def test_a_version_1_file_is_upgraded_and_keeps_its_calls_in_flight(
        tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    # calls made before the upgrade: one settled, one still in flight
    old = SqliteStore(str(path))
    await old.open()
    await old.create_agent("bot", "team")
    await old.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 1}]}))
    _, secret = await old.create_key(NewKey(agent="bot"))
    settled = await old.reserve(ticket(secret, 2_000))
    assert await old.settle(Outcome(settled.id, 200, cost_micros=1_500))
    in_flight = await old.reserve(ticket(secret, 3_000))
    await old.close()
    downgrade_to_v1(path)
    conn = sqlite3.connect(path)
    held = conn.execute("SELECT * FROM reservations").fetchall()
    before = conn.execute("SELECT seq, request_id, settlement FROM ledger ORDER BY seq").fetchall()
    conn.close()
    assert [r[2] for r in before] == ["settled", "pending"]

    store = SqliteStore(str(path))
    await store.open()
    try:
        conn = store.conn
        assert version(conn) == SCHEMA_VERSION
        assert "WITHOUT ROWID" in shape(conn, "reservations")
        assert "WHERE grp IS NOT NULL" in shape(conn, "ledger_grp")
        # the call in flight: its reservation as it was, its pending row now beside it
        assert [r[:9] for r in conn.execute("SELECT * FROM reservations")] == held
        assert conn.execute("SELECT seq FROM reservations").fetchall() == [(before[1][0],)]
        assert conn.execute("SELECT request_id FROM ledger").fetchall() == [(before[0][1],)]
        assert [r["settlement"] for r in await store.audit(None, 10)] == ["pending", "settled"]
        # the call in flight settles once, against what it reserved
        assert await store.settle(Outcome(in_flight.id, 200, cost_micros=1_000))
        assert not await store.settle(Outcome(in_flight.id, 200, cost_micros=1_000))
        line = next(b for b in (await store.usage("agent:bot"))["budgets"])
        assert (line["spent_usd"], line["reserved_usd"]) == ("0.0025", "0")
        # the group's rows are still found through its index
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT cost FROM ledger WHERE grp = ? AND ts_ms >= ?",
            ("team", 0)))
        assert "ledger_grp" in plan
        assert len(await store.audit("group:team", 10)) == 2
    finally:
        await store.close()


async def test_a_version_3_file_keeps_its_approvals(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    old = SqliteStore(str(path))
    await old.open()
    await old.put_policy("agent:bot", parse_policy(
        {"on_breach": "require_approval", "rpm": 0}))
    _, secret = await old.create_key(NewKey(agent="bot"))
    with pytest.raises(ApprovalRequired) as opened:
        await old.reserve(ticket(secret, 0))
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    drop_v4_columns(conn)
    conn.execute("UPDATE meta SET v='3' WHERE k='schema_version'")
    conn.close()

    store = SqliteStore(str(path))
    await store.open()
    try:
        assert version(store.conn) == SCHEMA_VERSION
        shown = await store.get_approval(opened.value.details["approval_id"])
        # it covers the breach it names, never expires, and was not used
        assert (shown["state"], shown["breaches"], shown["expires_at"], shown["used_at"]) == (
            "pending", [{"scope": "agent:bot", "code": "rate_limit_exceeded"}], None, None)
    finally:
        await store.close()


async def test_a_version_6_files_calls_in_flight_count_as_sent(
        tmp_path: Path, clock: Clock) -> None:
    """A reservation held when the file is upgraded may have been sent: charged in full if
    its worker is gone, as before."""
    path = tmp_path / "outlay.db"
    old = SqliteStore(str(path), clock=clock)
    await old.open()
    await old.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
    _, secret = await old.create_key(NewKey(agent="bot"))
    await old.reserve(ticket(secret, 3_000))
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE reservations DROP COLUMN forwarded")
    conn.execute("UPDATE meta SET v='6' WHERE k='schema_version'")
    conn.close()

    store = SqliteStore(str(path), clock=clock)
    await store.open()
    try:
        assert version(store.conn) == SCHEMA_VERSION
        assert [(r.charged, r.micros, r.voided) for r in await store.reap()] == [(1, 3_000, 0)]
    finally:
        await store.close()


async def test_a_version_8_file_gets_rollups_of_its_ledger(
        tmp_path: Path, clock: Clock) -> None:
    """The hourly rollups are back-filled from the rows written before them, then kept."""
    path = tmp_path / "outlay.db"
    old = SqliteStore(str(path), clock=clock)
    await old.open()
    _, secret = await old.create_key(NewKey(agent="bot"))
    for hour, cost in ((0, 1_000), (2, 2_500)):
        clock.set(START.replace(hour=12 + hour))
        held = await old.reserve(ticket(secret, cost))
        await old.settle(Outcome(held.id, 200, cost_micros=cost))
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    for trigger in ("ledger_rollup_insert", "ledger_rollup_update", "ledger_rollup_delete"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE rollups")
    conn.execute("UPDATE meta SET v='8' WHERE k='schema_version'")
    conn.close()

    store = SqliteStore(str(path), clock=clock)
    await store.open()
    try:
        assert version(store.conn) == SCHEMA_VERSION
        query = SeriesQuery("global", "hour", ms(START), ms(START) + 3 * 3_600_000)
        held = await store.reserve(ticket(secret, 300))  # at 14:00, after the upgrade
        await store.settle(Outcome(held.id, 200, cost_micros=300))
        points = series_answer(query, await store.series(query))["points"]
        assert [(p["requests"], p["cost_usd"]) for p in points] == [
            (1, "0.001"), (0, "0"), (2, "0.0028")]
    finally:
        await store.close()


V9_WINDOWS = """CREATE TABLE windows (
  scope TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (scope, name)
) WITHOUT ROWID"""


async def test_a_version_9_files_windows_move_into_counters_and_still_count(
        tmp_path: Path, clock: Clock) -> None:
    """Rate windows kept in their own table (packed, or in the text form of earlier
    versions) are read as before once they are rows of `counters`."""
    path = tmp_path / "outlay.db"
    old = SqliteStore(str(path), clock=clock)
    await old.open()
    _, secret = await old.create_key(NewKey(agent="bot"))
    await old.put_policy("agent:bot", parse_policy(
        {"rpm": 5, "tpm": 10**6, "budgets": [{"usd": 1}]}))
    for _ in range(3):
        held = await old.reserve(ticket(secret, 1_000, tokens=10))
        await old.settle(Outcome(held.id, 200, cost_micros=500, tokens=7))
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(V9_WINDOWS)
    rows = conn.execute("SELECT scope, period, state FROM counters WHERE period_start = -1"
                        ).fetchall()
    assert sorted(name for _, name, _ in rows) == ["rpm", "tpm"]
    for scope, name, state in rows:  # the rpm window in the text form of earlier versions
        stored = state if name == "tpm" else (
            f"{decode(state).newest}:{','.join(map(str, decode(state).counts))}")
        conn.execute("INSERT INTO windows VALUES (?, ?, ?)", (scope, name, stored))
    conn.execute("DELETE FROM counters WHERE period_start = -1")
    conn.execute("ALTER TABLE counters DROP COLUMN state")
    conn.execute("UPDATE meta SET v='9' WHERE k='schema_version'")
    conn.close()

    store = SqliteStore(str(path), clock=clock)
    await store.open()
    try:
        assert version(store.conn) == SCHEMA_VERSION
        assert "state BLOB" in shape(store.conn, "counters")
        assert store.conn.execute("SELECT 1 FROM sqlite_schema WHERE name='windows'"
                                  ).fetchone() is None
        windows = {w["name"]: w["used"] for w in (await store.usage("agent:bot"))["windows"]}
        assert windows == {"rpm": 3, "tpm": 21}
        budget = next(b for b in (await store.usage("agent:bot"))["budgets"])
        assert budget["spent_usd"] == "0.0015"
        # the windows go on counting from what was kept: two more calls fill the rpm of 5
        for _ in range(2):
            await store.reserve(ticket(secret, 1_000, tokens=10))
        with pytest.raises(RateLimited):
            await store.reserve(ticket(secret, 1_000, tokens=10))
    finally:
        await store.close()


async def test_a_version_10_files_forwarded_flags_become_marks(
        tmp_path: Path, clock: Clock) -> None:
    """The calls held in a file whose reservations carry their forwarded flag keep it as a
    row of `forwarded_calls`: the reaper charges those sent (flag 1, or NULL from before
    version 7, or a reservation numbered before version 3) and voids the one never sent, as
    before the upgrade."""
    path = tmp_path / "outlay.db"
    old = SqliteStore(str(path), clock=clock)
    await old.open()
    await old.put_policy("global", parse_policy({"budgets": [{"usd": 1}]}))
    _, secret = await old.create_key(NewKey(agent="bot"))
    held = [(await old.reserve(ticket(secret, cost))).id
            for cost in (1_000, 2_000, 4_000, 16_000)]
    settled = await old.reserve(ticket(secret, 8_000))
    await old.forwarding(settled.id)
    await old.settle(Outcome(settled.id, 200, cost_micros=8_000))
    await old.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE forwarded_calls")
    for rid, flag in zip(held, (0, 1, None, None), strict=True):
        conn.execute("UPDATE reservations SET forwarded=? WHERE id=?", (flag, rid))
    conn.execute("UPDATE reservations SET seq=NULL WHERE id=?", (held[3],))
    conn.execute("UPDATE meta SET v='10' WHERE k='schema_version'")
    conn.close()

    store = SqliteStore(str(path), clock=clock)
    await store.open()
    try:
        assert version(store.conn) == SCHEMA_VERSION
        marked = {r[0] for r in store.conn.execute(
            "SELECT id FROM reservations JOIN forwarded_calls USING (seq)")}
        assert marked == set(held[1:3])
        assert [(r.charged, r.micros, r.voided) for r in await store.reap()] == [
            (3, 22_000, 1)]
        # and a call held after the upgrade is marked as any (in the worker's file)
        after = await store.reserve(ticket(secret, 500))
        assert await store.forwarding(after.id)
        assert store._marks is not None
        assert after.id in (read_marks(store._marks.directory, store.worker) or set())
    finally:
        await store.close()


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outlay.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply(conn)
    conn.execute("UPDATE meta SET v=? WHERE k='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(RuntimeError, match="newer than this Outlay knows"):
        apply(conn)
    conn.close()


def test_an_upgrade_that_fails_half_way_leaves_the_file_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "outlay.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply(conn)
    conn.close()
    downgrade_to_v1(path)

    def half_way(c: sqlite3.Connection) -> None:
        c.execute("DROP INDEX ledger_grp")
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setitem(sqlite_schema.MIGRATIONS, 2, half_way)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        apply(conn)
    assert version(conn) == 1
    assert shape(conn, "ledger_grp") == V1_LEDGER_GRP
    conn.close()
