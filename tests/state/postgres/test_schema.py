"""The PostgreSQL store's migrations: applied once, in order, each in its own transaction,
by exactly one of several replicas starting together; a newer database is refused."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys

import psycopg
import pytest

from outlay.state.base import StateError
from outlay.state.postgres import schema as postgres_schema
from outlay.state.postgres.durable import PostgresDurable
from outlay.state.postgres.schema import LATEST, Migration, migrate, schema_version
from tests.servers.postgres import free_port

TABLES = {
    "schema_migrations", "meta", "groups", "agents", "keys", "policies", "ledger",
    "event_marks", "approvals", "webhook_endpoints", "outbox", "deliveries",
    "delivery_attempts", "admin_tokens", "admin_audit", "rollups",
}


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = 'public'").fetchall()
    return {r[0] for r in rows}


def recorded(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return [(v, d) for v, d in conn.execute(
            "SELECT version, description FROM schema_migrations ORDER BY version")]


EVERY = list(range(1, LATEST + 1))


async def test_a_fresh_database_gets_the_whole_schema(postgres_dsn: str) -> None:
    assert await schema_version(postgres_dsn) == 0
    assert await migrate(postgres_dsn) == EVERY
    assert await schema_version(postgres_dsn) == LATEST == 7
    assert tables(postgres_dsn) == TABLES
    assert [v for v, _ in recorded(postgres_dsn)] == EVERY


async def test_migrating_again_applies_nothing(postgres_dsn: str) -> None:
    await migrate(postgres_dsn)
    assert await migrate(postgres_dsn) == []
    assert [v for v, _ in recorded(postgres_dsn)] == EVERY


async def test_opening_the_store_migrates(postgres_dsn: str) -> None:
    store = PostgresDurable(postgres_dsn)
    await store.open()
    await store.close()
    assert await schema_version(postgres_dsn) == LATEST
    assert await migrate(postgres_dsn) == []


async def test_concurrent_migrations_from_tasks_apply_each_version_once(
    postgres_dsn: str,
) -> None:
    results = await asyncio.gather(*(migrate(postgres_dsn) for _ in range(6)))
    # each migration is its own transaction: one task may apply one, another the next
    assert sorted(v for applied in results for v in applied) == EVERY
    assert [v for v, _ in recorded(postgres_dsn)] == EVERY


def test_concurrent_migrations_from_processes_apply_each_version_once(
    postgres_dsn: str,
) -> None:
    """Replicas starting at the same moment: one applies, the others wait and find it done."""
    script = ("import asyncio, sys; from outlay.state.postgres.schema import migrate; "
              "print(asyncio.run(migrate(sys.argv[1])))")
    procs = [subprocess.Popen([sys.executable, "-c", script, postgres_dsn],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    applied: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        applied += ast.literal_eval(out.strip())
    assert sorted(applied) == EVERY
    assert [v for v, _ in recorded(postgres_dsn)] == EVERY


async def test_a_database_of_a_newer_outlay_is_refused(postgres_dsn: str) -> None:
    await migrate(postgres_dsn)
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO schema_migrations(version, description) "
                     "VALUES (%s, 'from the future')", (LATEST + 1,))
    with pytest.raises(StateError, match=rf"schema version {LATEST + 1}.*upgrade Outlay"):
        await migrate(postgres_dsn)
    store = PostgresDurable(postgres_dsn)
    with pytest.raises(StateError, match="upgrade Outlay"):
        await store.open()
    assert not store.opened
    assert await schema_version(postgres_dsn) == LATEST + 1


async def test_a_later_migration_applies_on_top_in_order(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await migrate(postgres_dsn)
    more = (*postgres_schema.MIGRATIONS,
            Migration(LATEST + 1, "a column", "ALTER TABLE meta ADD COLUMN note TEXT"),
            Migration(LATEST + 2, "an index", "CREATE INDEX meta_note ON meta(note)"))
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", more)
    monkeypatch.setattr(postgres_schema, "LATEST", LATEST + 2)
    assert await migrate(postgres_dsn) == [LATEST + 1, LATEST + 2]
    assert [v for v, _ in recorded(postgres_dsn)] == [*EVERY, LATEST + 1, LATEST + 2]
    assert await schema_version(postgres_dsn) == LATEST + 2


async def test_a_failing_migration_leaves_nothing_behind(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await migrate(postgres_dsn)
    broken = Migration(LATEST + 1, "broken", "CREATE TABLE half_done (x INTEGER); SELEC 1")
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", (*postgres_schema.MIGRATIONS, broken))
    monkeypatch.setattr(postgres_schema, "LATEST", LATEST + 1)
    with pytest.raises(StateError, match="cannot migrate"):
        await migrate(postgres_dsn)
    assert await schema_version(postgres_dsn) == LATEST
    assert "half_done" not in tables(postgres_dsn)


async def test_an_unreachable_server_is_a_state_error(unused_dsn: str) -> None:
    with pytest.raises(StateError, match="cannot migrate the PostgreSQL database"):
        await migrate(unused_dsn)
    with pytest.raises(StateError, match="cannot read the schema version"):
        await schema_version(unused_dsn)


@pytest.fixture
def unused_dsn() -> str:
    """A DSN to a loopback port nothing listens on."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/outlay"


def rollups(dsn: str) -> list[tuple[int, str, str, int, int, int]]:
    """The global rollups; every row is agent bot's, whose rollups must be the same."""
    read = ("SELECT hour_ms, vendor, model, requests, refused, cost FROM rollups "
            "WHERE scope = %s AND (requests <> 0 OR cost <> 0) ORDER BY 1, 2, 3, refused DESC")
    with psycopg.connect(dsn) as conn:
        found = [tuple(r) for r in conn.execute(read, ("global",))]
        assert [tuple(r) for r in conn.execute(read, ("agent:bot",))] == found
    return found  # type: ignore[return-value]


async def test_the_rollups_are_back_filled_from_the_ledger_then_kept(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database of the version before gets rollups of the rows it holds; from then on the
    ledger's triggers keep them: a row inserted, a settlement, a row deleted."""
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", postgres_schema.MIGRATIONS[:6])
    monkeypatch.setattr(postgres_schema, "LATEST", 6)
    await migrate(postgres_dsn)
    insert = ("INSERT INTO ledger(request_id, ts_ms, agent, vendor, model, decision, code, "
              "cost, settlement) VALUES (%s, %s, 'bot', %s, 'm', %s, %s, %s, %s)")
    hour = 3_600_000
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute(insert, ("a", 5 * hour + 10, "openai", "allowed", None, 700, "settled"))
        conn.execute(insert, ("b", 5 * hour + 20, "openai", "refused", "budget_exceeded", 0,
                              "none"))
        conn.execute(insert, ("c", 7 * hour, "stripe", "allowed", None, 0, "pending"))
    monkeypatch.undo()
    assert await migrate(postgres_dsn) == [7]
    assert rollups(postgres_dsn) == [
        (5 * hour, "openai", "m", 1, 1, 0), (5 * hour, "openai", "m", 1, 0, 700),
        (7 * hour, "stripe", "m", 1, 0, 0)]
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("UPDATE ledger SET cost = 900, settlement = 'settled', model = 'm2' "
                     "WHERE request_id = 'c'")
        conn.execute("UPDATE ledger SET status = 200")  # moves nothing
        conn.execute(insert, ("d", 7 * hour + 5, "stripe", "allowed", None, 50, "settled"))
        conn.execute("DELETE FROM ledger WHERE request_id = 'a'")
    assert rollups(postgres_dsn) == [
        (5 * hour, "openai", "m", 1, 1, 0), (7 * hour, "stripe", "m", 1, 0, 50),
        (7 * hour, "stripe", "m2", 1, 0, 900)]
