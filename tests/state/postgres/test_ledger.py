"""The PostgreSQL ledger: the hot state's write-ahead log applied idempotently, the audit and
reports read as the embedded store reads them, and the queries that rebuild Redis."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
import pytest

from outlay.state import ledger_sql
from outlay.state.base import StateError
from outlay.state.postgres.durable import PostgresDurable
from outlay.state.postgres.ledger import _INSERT, ROW_COLUMNS
from outlay.state.sqlite.schema import apply as sqlite_apply

from ..support import Clock

MINUTE = 60_000
T0 = 1_710_417_600_000  # 2024-03-14T12:00:00Z


@pytest.fixture
async def durable(postgres_dsn: str, clock: Clock) -> AsyncIterator[PostgresDurable]:
    store = PostgresDurable(postgres_dsn, clock=clock)
    await store.open()
    yield store
    await store.close()


def row(request_id: str, ts_ms: int = T0, **fields: Any) -> dict[str, Any]:
    """A ledger row as the hot state logs it: an allowed call of key k1 (agent a, group g)."""
    base: dict[str, Any] = {
        "request_id": request_id, "ts_ms": ts_ms, "key_id": "k1", "agent": "a", "grp": "g",
        "labels": '{"team":"x"}', "vendor": "openai", "model": "gpt-4o-mini",
        "route": "/v1/chat/completions", "decision": "allowed", "code": None, "scope": None,
        "status": None, "reserved": 100, "cost": 0, "settlement": "pending", "spent": 500,
        "cap": 1_000, "tokens": 10, "worker": "w1", "idem": None, "idem_account": None,
        "replay_of": None, "waited_ms": None, "held": None, "estimated": None,
    }
    return {"t": "row", "row": {**base, **fields}}


def settle(request_id: str, cost: int, settlement: str = "settled", reserved: int = 100,
           tokens: int = 7, status: int | None = 200, model: str | None = None
           ) -> dict[str, Any]:
    return {"t": "settle", "request_id": request_id, "status": status, "cost": cost,
            "settlement": settlement, "model": model, "reserved": reserved, "tokens": tokens}


def event(mark: str, event_type: str = "budget.warning", ts_ms: int = T0) -> dict[str, Any]:
    return {"t": "event", "type": event_type, "mark": mark, "ts_ms": ts_ms,
            "data": {"scope": "agent:a", "agent_id": "a", "spent_usd": "8", "cap_usd": "10"}}


async def entries(store: PostgresDurable) -> list[dict[str, Any]]:
    return list(reversed(await store.audit(None, 1000)))


# -- apply_wal ----------------------------------------------------------------------------
async def test_a_batch_applied_twice_changes_nothing_the_second_time(
    durable: PostgresDurable,
) -> None:
    batch = [row("r1"), row("r2", cost=0, decision="refused", settlement="none",
                            code="budget_exceeded", scope="agent:a", status=402, reserved=0),
             settle("r1", 60)]
    await durable.apply_wal(batch)
    first = await entries(durable)
    await durable.apply_wal(batch)
    assert await entries(durable) == first
    assert [(e["request_id"], e["settlement"], e["cost_usd"]) for e in first] == [
        ("r1", "settled", "0.00006"), ("r2", "none", "0")]


async def test_a_row_settled_then_replayed_stays_settled_once(durable: PostgresDurable) -> None:
    await durable.apply_wal([row("r1")])
    await durable.apply_wal([settle("r1", 60, model="gpt-4o-mini-2024")])
    # the first batch again (a process that drained it late), then the second
    await durable.apply_wal([row("r1")])
    await durable.apply_wal([settle("r1", 60, model="gpt-4o-mini-2024")])
    # and a different settlement of the same call: the first one stands
    await durable.apply_wal([settle("r1", 99, settlement="unsettled")])
    (entry,) = await entries(durable)
    assert entry["settlement"] == "settled"
    assert entry["cost_usd"] == "0.00006"
    assert entry["status"] == 200
    assert entry["model"] == "gpt-4o-mini-2024"
    # spent moved from the reservation to the cost once: 500 - 100 + 60
    assert entry["spent_usd"] == "0.00046"
    assert entry["labels"] == {"team": "x"}
    assert await durable.pending_rows() == []


async def test_settling_keeps_the_model_when_none_is_given(durable: PostgresDurable) -> None:
    await durable.apply_wal([row("r1", spent=None, cap=None),
                             settle("r1", 0, settlement="void", status=None)])
    (entry,) = await entries(durable)
    assert (entry["model"], entry["settlement"], entry["status"]) == ("gpt-4o-mini", "void", None)
    assert entry["spent_usd"] is None


async def stored(store: PostgresDurable) -> dict[str, tuple[Any, ...]]:
    """Every column of every row, by request id (but the id and the sequence)."""
    columns = ", ".join(c for c in ROW_COLUMNS if c != "request_id")
    return {r[0]: tuple(r[1:]) for r in await store.fetchall(
        f"SELECT request_id, {columns} FROM ledger")}  # noqa: S608 (fixed columns)


async def test_a_row_and_its_settlement_in_one_batch_land_as_settled_once(
    durable: PostgresDurable,
) -> None:
    # merged into the row before the one statement inserts it: the same row as when the
    # settlement updated it (the first settlement of a call wins), and the caller's entries
    # are left as they were, to apply again
    twice = [settle("r1", 60, model="gpt-4o-mini-2024"), settle("r1", 99, "unsettled")]
    batch = [row("r1"), *twice, row("r2"), settle("r2", 40), row("r3", spent=None),
             settle("r3", 0, "void", status=None)]
    # the same calls as separate batches: r2 is there already, pending, when it settles
    await durable.apply_wal([row("a1"), row("a2"), row("a3", spent=None)])
    await durable.apply_wal([{**e, "request_id": "a1"} for e in twice])
    await durable.apply_wal([settle("a2", 40), settle("a3", 0, "void", status=None)])
    await durable.apply_wal([row("r2")])
    kept = [dict(e) for e in batch]
    await durable.apply_wal(batch)
    assert batch == kept
    rows = await stored(durable)
    assert [rows[f"r{n}"] for n in (1, 2, 3)] == [rows[f"a{n}"] for n in (1, 2, 3)]
    assert rows["r1"][ROW_COLUMNS.index("spent") - 1] == 460
    await durable.apply_wal(batch)
    assert await stored(durable) == rows


async def test_a_settlement_lands_on_a_row_another_process_inserts_meanwhile(
    durable: PostgresDurable, postgres_dsn: str
) -> None:
    # another process (a reaper draining this worker's stream) inserts the pending row, and
    # commits while this batch's insert waits for it: the batch's statement saw no row to
    # settle, so its settlement is applied again, by a statement that sees the row
    other = await psycopg.AsyncConnection.connect(postgres_dsn)
    try:
        await other.execute(_INSERT, (orjson.dumps([row("r1")["row"]]).decode(),))
        applying = asyncio.ensure_future(durable.apply_wal([row("r1"), settle("r1", 60)]))
        await asyncio.sleep(0.3)
        assert not applying.done()  # waiting for the other's row
        await other.commit()
        await applying
    finally:
        await other.close()
    (entry,) = await entries(durable)
    assert (entry["settlement"], entry["cost_usd"]) == ("settled", "0.00006")


async def test_a_settlement_with_figures_not_integers_is_left_to_postgresql(
    durable: PostgresDurable,
) -> None:
    # not merged: applied in one transaction by the UPDATE, which casts or refuses them
    await durable.apply_wal([row("r1", spent="500"), settle("r1", 60)])
    (entry,) = await entries(durable)
    assert (entry["settlement"], entry["spent_usd"]) == ("settled", "0.00046")


async def test_the_same_batch_from_two_processes_at_once_applies_once(
    postgres_dsn: str, clock: Clock,
) -> None:
    stores = [PostgresDurable(postgres_dsn, clock=clock) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        batches = [[row(f"r{i}"), settle(f"r{i}", i), event(f"m{i}")] for i in range(20)]
        await stores[0].add_webhook("https://hooks.example.com/a", ["*"])
        await asyncio.gather(*(s.apply_wal(b) for b in batches for s in stores))
        rows = await entries(stores[0])
        assert sorted(e["request_id"] for e in rows) == sorted(f"r{i}" for i in range(20))
        assert all(e["settlement"] == "settled" for e in rows)
        assert len(await stores[0].list_deliveries(limit=100)) == 20
    finally:
        for store in stores:
            await store.close()


async def test_an_event_mark_coalesces_across_batches(durable: PostgresDurable) -> None:
    everything = await durable.add_webhook("https://hooks.example.com/all", ["*"])
    await durable.apply_wal([event("budget.warning:agent:a:day:0")])
    await durable.apply_wal([event("budget.warning:agent:a:day:0"),
                             event("budget.warning:agent:a:day:0")])
    (delivery,) = await durable.list_deliveries(everything["id"])
    assert delivery["type"] == "budget.warning"


async def test_an_event_reaches_only_the_endpoints_that_want_it(
    durable: PostgresDurable,
) -> None:
    everything = await durable.add_webhook("https://hooks.example.com/all", [])
    warnings = await durable.add_webhook("https://hooks.example.com/w", ["budget.warning"])
    revocations = await durable.add_webhook("https://hooks.example.com/r", ["key.revoked"])
    await durable.apply_wal([event("w1"), event("x1", "budget.exceeded")])
    got = {e["id"]: sorted(d["type"] for d in await durable.list_deliveries(e["id"]))
           for e in (everything, warnings, revocations)}
    assert got == {everything["id"]: ["budget.exceeded", "budget.warning"],
                   warnings["id"]: ["budget.warning"], revocations["id"]: []}


async def test_an_event_nobody_wants_is_not_stored_but_still_coalesces(
    durable: PostgresDurable,
) -> None:
    await durable.apply_wal([event("w1")])
    assert await durable.list_deliveries() == []
    await durable.add_webhook("https://hooks.example.com/all", ["*"])
    await durable.apply_wal([event("w1")])  # announced already, to nobody
    assert await durable.list_deliveries() == []


async def test_an_event_is_created_at_its_own_time(durable: PostgresDurable) -> None:
    await durable.add_webhook("https://hooks.example.com/all", ["*"])
    await durable.apply_wal([event("w1", ts_ms=T0 + 5_000)])
    (delivery,) = await durable.list_deliveries()
    assert delivery["created_at"] == "2024-03-14T12:00:05Z"


async def test_a_bad_batch_applies_nothing(durable: PostgresDurable) -> None:
    with pytest.raises(ValueError, match="unknown"):
        await durable.apply_wal([row("r1"), {"t": "nonsense"}])
    with pytest.raises(ValueError, match="unknown webhook event type"):
        await durable.apply_wal([row("r1"), event("m", "no.such.event")])
    await durable.apply_wal([])
    assert await entries(durable) == []


async def test_an_entry_postgres_refuses_holds_back_no_other(durable: PostgresDurable) -> None:
    # a NUL (from a request's model, path or idempotency key) is text PostgreSQL refuses
    batch = [row(f"r{n}") for n in range(5)]
    batch[2] = row("r2", model="gpt\x00", route="/vendors/x/\x00", idem="idem-\x00")
    batch += [settle("r2", 60), settle("r3", 70), row("r5", model="gpt\udcff")]
    await durable.apply_wal(batch)
    by_id = {e["request_id"]: e for e in await entries(durable)}
    assert sorted(by_id) == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert (by_id["r2"]["model"], by_id["r2"]["route"]) == ("gpt\ufffd", "/vendors/x/\ufffd")
    assert by_id["r5"]["model"] == "gpt\ufffd"
    assert (by_id["r2"]["cost_usd"], by_id["r3"]["cost_usd"]) == ("0.00006", "0.00007")
    # a key changed to be stored must never match another call's
    assert await durable.idempotency_since(0) == []


async def test_an_entry_refused_even_cleaned_is_logged_and_left_out(
    durable: PostgresDurable, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "outlay.state"):
        await durable.apply_wal([row("r1"), row("r2", ts_ms="soon"), row("r3")])
    assert [e["request_id"] for e in await entries(durable)] == ["r1", "r3"]
    assert "left out" in caplog.text
    assert "'soon'" in caplog.text


async def test_a_connection_failure_is_not_taken_for_a_refused_entry(
    postgres_dsn: str, clock: Clock
) -> None:
    store = PostgresDurable(postgres_dsn, clock=clock)
    await store.open()
    await store.close()  # nothing to write with: the batch is kept by its caller
    with pytest.raises(StateError):
        await store.apply_wal([row("r1", model="gpt\x00")])


async def test_labels_given_as_an_object_are_stored_as_json(durable: PostgresDurable) -> None:
    await durable.apply_wal([row("r1", labels={"team": "y"}), row("r2", labels=None)])
    assert [e["labels"] for e in await entries(durable)] == [{"team": "y"}, {}]


# -- audit, reports and spend, as the embedded store reads them ---------------------------
ROWS = [
    row("r1", key_id="k1", agent="a", grp="g", vendor="openai", model="gpt-4o",
        cost=300, settlement="settled", status=200),
    row("r2", T0 + 1, key_id="k2", agent="b", grp=None, vendor="anthropic",
        model="claude", cost=70, settlement="unsettled", status=0, labels=None),
    row("r3", T0 + 2, key_id="k1", agent="a", grp="g", vendor="stripe", model=None,
        cost=5, settlement="settled", status=200),
    row("r4", T0 + 3, key_id="k1", agent="a", grp="g", decision="refused",
        code="budget_exceeded", scope="agent:a", status=402, reserved=0,
        settlement="none"),
    row("r5", T0 + 4, key_id=None, agent=None, grp=None, labels=None, decision="refused",
        code="invalid_api_key", status=401, reserved=0, settlement="none", spent=None,
        cap=None),
    row("r6", T0 + 5, key_id="k3", agent="c", grp="g", vendor="openai", model="gpt-4o",
        cost=0, reserved=40, settlement="pending"),
    row("r0", T0 - 10 * MINUTE, key_id="k1", agent="a", grp="g", cost=1_000,
        settlement="settled", status=200),
]


@pytest.fixture
def sqlite_ledger() -> sqlite3.Connection:
    """The same rows in the embedded store's ledger, to compare readings with."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    sqlite_apply(conn)
    columns = ledger_sql.AUDIT_COLUMNS
    conn.executemany(
        f"INSERT INTO ledger({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608
        [tuple(e["row"].get(c) for c in columns) for e in ROWS])
    return conn


@pytest.mark.parametrize("scope", [None, "key:k1", "agent:a", "group:g", "vendor:openai",
                                   "global", "agent:nobody"])
async def test_audit_reads_as_the_embedded_store(
    durable: PostgresDurable, sqlite_ledger: sqlite3.Connection, scope: str | None,
) -> None:
    await durable.apply_wal(ROWS)
    assert await durable.audit(scope, 100) == ledger_sql.audit(sqlite_ledger, scope, 100)
    assert await durable.audit(scope, 2) == ledger_sql.audit(sqlite_ledger, scope, 2)


async def test_the_audit_places_a_row_by_the_time_it_was_decided(
    durable: PostgresDurable, sqlite_ledger: sqlite3.Connection,
) -> None:
    # one replica's rows reach PostgreSQL up to a flush later than another's: a call decided
    # earlier can arrive after one decided later, and the audit still lists it after it;
    # rows of the same millisecond keep the order they were recorded in
    await durable.apply_wal([row("b", T0 + 5), row("c", T0 + 5)])
    await durable.apply_wal([row("a", T0 + 1)])
    assert [e["request_id"] for e in await durable.audit(None, 10)] == ["c", "b", "a"]
    assert [e["request_id"] for e in await durable.audit("key:k1", 2)] == ["c", "b"]
    # the fixture's r0, recorded last but decided ten minutes before the others, comes last
    # on both stores
    await durable.apply_wal(ROWS)
    newest = [e["request_id"] for e in await durable.audit("key:k1", 100)]
    assert newest[-1] == "r0"
    assert [e["request_id"] for e in ledger_sql.audit(sqlite_ledger, "key:k1", 100)] == [
        "r4", "r3", "r1", "r0"]


@pytest.mark.parametrize("group_by", sorted(ledger_sql.GROUP_BY))
@pytest.mark.parametrize("since", [None, T0])
async def test_reports_read_as_the_embedded_store(
    durable: PostgresDurable, sqlite_ledger: sqlite3.Connection, group_by: str,
    since: int | None,
) -> None:
    await durable.apply_wal(ROWS)
    assert (await durable.report(group_by, since)
            == ledger_sql.report(sqlite_ledger, group_by, since))


@pytest.mark.parametrize("scope", ["key:k1", "agent:a", "group:g", "vendor:openai", "global"])
async def test_spend_by_model_and_vendor_reads_as_the_embedded_store(
    durable: PostgresDurable, sqlite_ledger: sqlite3.Connection, scope: str,
) -> None:
    await durable.apply_wal(ROWS)
    for since in (0, T0):
        by_model, by_vendor = await durable.spend_by(scope, since)
        where, args = ledger_sql.scope_filter(scope)
        expected_model = dict(sqlite_ledger.execute(
            f"SELECT model, SUM(cost) FROM ledger WHERE {where} AND ts_ms >= ? "  # noqa: S608
            "AND cost > 0 AND model IS NOT NULL GROUP BY model ORDER BY model",
            (*args, since)).fetchall())
        expected_vendor = dict(sqlite_ledger.execute(
            f"SELECT vendor, SUM(cost) FROM ledger WHERE {where} AND ts_ms >= ? "  # noqa: S608
            "AND cost > 0 GROUP BY vendor ORDER BY vendor", (*args, since)).fetchall())
        assert (by_model, by_vendor) == (expected_model, expected_vendor)
        assert list(by_model) == list(expected_model)


# -- rebuilding the hot state -------------------------------------------------------------
REBUILD = [
    row("p1", T0, reserved=100, tokens=10, worker="w1", idem="idem-1", idem_account="acct",
        vendor="stripe"),
    row("p2", T0 + 30_000, key_id="k2", agent="b", grp="g", reserved=50, tokens=5,
        worker="w2"),
    row("s1", T0 + 61_000, cost=40, settlement="settled", tokens=4, idem="idem-2",
        idem_account="acct", vendor="stripe"),
    row("v1", T0 + 62_000, cost=0, settlement="void", tokens=0, idem="idem-3",
        idem_account="acct", vendor="stripe"),

    row("u1", T0 + 125_000, cost=70, reserved=70, settlement="unsettled", tokens=9),
    row("x1", T0 + 1_000, decision="refused", settlement="none", reserved=0, tokens=0,
        code="rate_limit_exceeded", idem="idem-4"),
    row("old", T0 - MINUTE, cost=1_000, settlement="settled", tokens=100, idem="idem-0",
        idem_account="acct-2"),
]


async def test_committed_spend_and_reservations_of_a_scope(durable: PostgresDurable) -> None:
    await durable.apply_wal(REBUILD)
    assert await durable.committed("key:k1", T0) == (40 + 70, 100)
    assert await durable.committed("agent:b", T0) == (0, 50)
    assert await durable.committed("group:g", T0) == (110, 150)
    assert await durable.committed("vendor:stripe", T0) == (40, 100)
    assert await durable.committed("global", T0) == (110, 150)
    assert await durable.committed("global", T0 - MINUTE) == (1_110, 150)
    assert await durable.committed("global", T0 + 200_000) == (0, 0)
    assert await durable.committed("agent:nobody", 0) == (0, 0)


async def test_window_counts_by_bucket(durable: PostgresDurable) -> None:
    await durable.apply_wal(REBUILD)
    base = T0 // MINUTE
    assert await durable.window_counts("global", T0, MINUTE, tokens=False) == {
        base: 2, base + 1: 2, base + 2: 1}
    assert await durable.window_counts("global", T0, MINUTE, tokens=True) == {
        base: 15, base + 1: 4, base + 2: 9}
    assert await durable.window_counts("agent:a", T0 - MINUTE, MINUTE, tokens=True) == {
        base - 1: 100, base: 10, base + 1: 4, base + 2: 9}
    assert await durable.window_counts("key:k2", T0, 1_000, tokens=False) == {
        (T0 + 30_000) // 1_000: 1}
    assert await durable.window_counts("vendor:nobody", 0, MINUTE, tokens=False) == {}


async def test_pending_rows_are_the_open_reservations(durable: PostgresDurable) -> None:
    await durable.apply_wal(REBUILD)
    assert await durable.pending_rows() == [
        {"request_id": "p1", "ts_ms": T0, "key_id": "k1", "agent": "a", "grp": "g",
         "vendor": "stripe", "reserved": 100, "tokens": 10, "worker": "w1", "idem": "idem-1",
         "idem_account": "acct", "labels": '{"team":"x"}', "flow": None},
        {"request_id": "p2", "ts_ms": T0 + 30_000, "key_id": "k2", "agent": "b", "grp": "g",
         "vendor": "openai", "reserved": 50, "tokens": 5, "worker": "w2", "idem": None,
         "idem_account": None, "labels": '{"team":"x"}', "flow": None},
    ]
    await durable.apply_wal([settle("p1", 80, tokens=8)])
    assert [r["request_id"] for r in await durable.pending_rows()] == ["p2"]
    assert await durable.committed("key:k1", T0) == (40 + 70 + 80, 0)
    assert (await durable.window_counts("key:k1", T0, MINUTE, tokens=True))[T0 // MINUTE] == 8


async def test_idempotency_keys_of_admitted_calls_not_voided(durable: PostgresDurable) -> None:
    await durable.apply_wal([
        *REBUILD,
        # a replay of s1 from another key: it registers nothing
        row("r1", T0 + 63_000, key_id="k2", cost=0, reserved=0, settlement="settled",
            tokens=0, code="idempotent_replay", replay_of="s1", vendor="stripe"),
        # kept before keys were kept by account: its account is unknown, so it is left out
        row("pre", T0 + 64_000, cost=5, settlement="settled", tokens=0, idem="idem-5",
            vendor="stripe")])
    assert await durable.idempotency_since(T0) == [
        ("stripe", "acct", "idem-1", "p1"), ("stripe", "acct", "idem-2", "s1")]
    assert await durable.idempotency_since(T0 - MINUTE) == [
        ("stripe", "acct", "idem-1", "p1"), ("stripe", "acct", "idem-2", "s1"),
        ("openai", "acct-2", "idem-0", "old")]
    await durable.apply_wal([settle("p1", 0, settlement="void")])
    assert await durable.idempotency_since(T0) == [("stripe", "acct", "idem-2", "s1")]
    assert [e["replay_of"] for e in await durable.audit("key:k2", 10)] == ["s1", None]


async def test_reading_a_closed_store_is_a_state_error(postgres_dsn: str) -> None:
    store = PostgresDurable(postgres_dsn)
    with pytest.raises(StateError, match="not open"):
        await store.audit(None, 10)
    with pytest.raises(StateError, match="not open"):
        await store.apply_wal([row("r1")])


async def test_tag_scopes_and_values_read_the_rows_labels(durable: PostgresDurable) -> None:
    await durable.apply_wal([
        row("t1", T0, cost=30, settlement="settled", labels={"customer": "acme", "team": "x"}),
        row("t2", T0 + 1, cost=20, settlement="settled", labels={"customer": "beta"}),
        row("t3", T0 + 2, reserved=5, labels={"customer": "acme"}),
        row("t4", T0 + 3, decision="refused", settlement="none",
            labels={"customer": "gamma"}),
    ])
    assert await durable.committed("tag:customer=acme", T0) == (30, 5)
    assert await durable.committed("tag:customer=beta", T0) == (20, 0)
    assert await durable.committed("tag:customer=*", T0) == (50, 5)
    assert await durable.committed("tag:customer=nobody", T0) == (0, 0)
    assert sorted(await durable.tag_values("customer", T0)) == ["acme", "beta"]
    assert await durable.tag_values("customer", T0 + 10) == []
    audit = await durable.audit("tag:customer=acme", 10)
    assert [e["request_id"] for e in audit] == ["t3", "t1"]
