"""Hourly rollups of the ledger (SQLite and PostgreSQL): what a series of spend over time is
read from, instead of a scan of the ledger per request.

`rollups` holds, per UTC hour and agent, group, vendor, model and refusal code, the sums a
series shows: requests (every row but `credit`), refusals (`refused` and `invalid`), spend
and money moved out. Triggers on the ledger keep it in the transaction that writes the rows
(each insert, each settlement, and any other change, as the difference of the row before and
after), so it always equals the ledger's sums. A NULL column is kept as '' (a primary key
needs values); a code only on refusals. Scopes of a key or a tag are read from the ledger
(by its `ledger_key` index, or the range's rows): a rollup by key would hold a row per
per-run key.
"""

# S608: the SQL here is built from this module's constants and checked names only; every
# value is bound
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from outlay.policy.series import SeriesQuery, Sums
from outlay.state import ledger_sql

_KEYS = ("hour_ms", "agent", "grp", "vendor", "model", "code")
_SUMS = ("requests", "refused", "cost", "out")
REFUSED = "('refused', 'invalid')"


def _key_exprs(row: str) -> tuple[str, ...]:
    return (f"{row}.ts_ms / 3600000 * 3600000", f"COALESCE({row}.agent, '')",
            f"COALESCE({row}.grp, '')", f"COALESCE({row}.vendor, '')",
            f"COALESCE({row}.model, '')",
            f"CASE WHEN {row}.decision IN {REFUSED} THEN COALESCE({row}.code, '') ELSE '' END")


def _sum_exprs(row: str, sign: str = "") -> tuple[str, ...]:
    return (f"{sign}(CASE WHEN {row}.decision <> 'credit' THEN 1 ELSE 0 END)",
            f"{sign}(CASE WHEN {row}.decision IN {REFUSED} THEN 1 ELSE 0 END)",
            f"{sign}(CASE WHEN {row}.flow IS NULL THEN {row}.cost ELSE 0 END)",
            f"{sign}(CASE WHEN {row}.flow IS NULL THEN 0 ELSE {row}.cost END)")


_ADD = ", ".join(f"{s} = rollups.{s} + excluded.{s}" for s in _SUMS)
_UPSERT_TAIL = f" ON CONFLICT ({', '.join(_KEYS)}) DO UPDATE SET {_ADD}"
_COLUMNS = ", ".join((*_KEYS, *_SUMS))
# the columns whose change moves a row's sums (an update of others leaves rollups alone)
_MOVING = ("ts_ms", "agent", "grp", "vendor", "model", "code", "decision", "cost", "flow")


def _sqlite_upsert(row: str, sign: str = "") -> str:
    values = ", ".join((*_key_exprs(row), *_sum_exprs(row, sign)))
    return f"INSERT INTO rollups({_COLUMNS}) VALUES ({values}){_UPSERT_TAIL};"


_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _MOVING)
SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS rollups (
  hour_ms INTEGER NOT NULL, agent TEXT NOT NULL, grp TEXT NOT NULL, vendor TEXT NOT NULL,
  model TEXT NOT NULL, code TEXT NOT NULL,
  requests INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0,
  cost INTEGER NOT NULL DEFAULT 0, out INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY ({', '.join(_KEYS)})
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS ledger_rollup_insert AFTER INSERT ON ledger BEGIN
  {_sqlite_upsert("NEW")}
END;
CREATE TRIGGER IF NOT EXISTS ledger_rollup_update AFTER UPDATE OF {', '.join(_MOVING)}
ON ledger WHEN {_CHANGED} BEGIN
  {_sqlite_upsert("OLD", "-")}
  {_sqlite_upsert("NEW")}
END;
CREATE TRIGGER IF NOT EXISTS ledger_rollup_delete AFTER DELETE ON ledger BEGIN
  {_sqlite_upsert("OLD", "-")}
END;
"""

_GROUPED = ", ".join(str(i) for i in range(1, len(_KEYS) + 1))
# every rollup made again from the ledger: the migration's back-fill (idempotent)
BACKFILL = (
    "DELETE FROM rollups;\n"
    f"INSERT INTO rollups({_COLUMNS}) SELECT {', '.join(_key_exprs('ledger'))}, "
    + ", ".join(f"SUM{e}" for e in _sum_exprs("ledger"))
    + f" FROM ledger GROUP BY {_GROUPED};\n")


def _pg_delta(source: str, sign: str) -> str:
    return (f"SELECT {', '.join(_key_exprs('r'))}, "
            + ", ".join(_sum_exprs("r", sign)) + f" FROM {source} r")


_PG_CHANGED = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in _MOVING)
# statement triggers over transition tables: one upsert per statement (a batch of the
# write-ahead log), its rows summed by rollup and taken in key order, so that two appliers
# lock rollups in the same order
PG_SCHEMA = f"""
LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE rollups (
  hour_ms BIGINT NOT NULL, agent TEXT NOT NULL, grp TEXT NOT NULL, vendor TEXT NOT NULL,
  model TEXT NOT NULL, code TEXT NOT NULL,
  requests BIGINT NOT NULL DEFAULT 0, refused BIGINT NOT NULL DEFAULT 0,
  cost BIGINT NOT NULL DEFAULT 0, out BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY ({', '.join(_KEYS)})
);
CREATE FUNCTION ledger_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO rollups({_COLUMNS}) SELECT {', '.join(_KEYS)}, {
        ', '.join(f'SUM({s})' for s in _SUMS)}
    FROM ({_pg_delta('new_rows', '')}) d({_COLUMNS})
    GROUP BY {_GROUPED} ORDER BY {_GROUPED}{_UPSERT_TAIL};
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO rollups({_COLUMNS}) SELECT {', '.join(_KEYS)}, {
        ', '.join(f'SUM({s})' for s in _SUMS)}
    FROM ({_pg_delta('(SELECT o.* FROM old_rows o JOIN new_rows n USING (seq) WHERE '
                     + _PG_CHANGED + ')', '-')}
          UNION ALL {_pg_delta('(SELECT n.* FROM old_rows o JOIN new_rows n USING (seq) '
                               'WHERE ' + _PG_CHANGED + ')', '')}) d({_COLUMNS})
    GROUP BY {_GROUPED} ORDER BY {_GROUPED}{_UPSERT_TAIL};
  ELSE
    INSERT INTO rollups({_COLUMNS}) SELECT {', '.join(_KEYS)}, {
        ', '.join(f'SUM({s})' for s in _SUMS)}
    FROM ({_pg_delta('old_rows', '-')}) d({_COLUMNS})
    GROUP BY {_GROUPED} ORDER BY {_GROUPED}{_UPSERT_TAIL};
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER ledger_rollup_insert AFTER INSERT ON ledger
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rollup();
CREATE TRIGGER ledger_rollup_update AFTER UPDATE ON ledger
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_rollup();
CREATE TRIGGER ledger_rollup_delete AFTER DELETE ON ledger
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rollup();
{BACKFILL}"""

# a rollup a settlement emptied (its call moved to the model that served it) is no value
_SOME = "HAVING SUM(requests) <> 0 OR SUM(refused) <> 0 OR SUM(cost) <> 0"
# a scope read from the rollups: its column there
_ROLLUP_SCOPES = {"vendor": "vendor", "agent": "agent", "group": "grp"}
_LEDGER_SPLIT = {"vendor": "vendor", "model": "model", "agent": "agent",
                 "code": f"CASE WHEN decision IN {REFUSED} THEN code END"}


def from_rollups(scope: str) -> bool:
    return scope == "global" or scope.partition(":")[0] in _ROLLUP_SCOPES


def rollup_query(query: SeriesQuery, mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The sums of a series by interval (and split value) from the rollups, for a scope
    `from_rollups` takes; `mark`: the driver's placeholder."""
    where = "hour_ms >= {m} AND hour_ms < {m}"
    args: list[Any] = [query.first, query.until_ms]
    if query.scope != "global":
        kind, _, name = query.scope.partition(":")
        where += f" AND {_ROLLUP_SCOPES[kind]} = {{m}}"
        args.append(name)
    split = f"NULLIF({query.split}, '')" if query.split else "NULL"
    sql = (f"SELECT hour_ms / {query.step} * {query.step}, {split}, SUM(requests), "
           f"SUM(refused), SUM(cost) FROM rollups WHERE {where} GROUP BY 1, 2 {_SOME}")
    return sql.replace("{m}", mark), tuple(args)


def ledger_query(query: SeriesQuery, source: str, where: str, args: tuple[Any, ...],
                 mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The same sums from ledger rows (`source`) a scope filter selects (`where`, `args`)."""
    split = _LEDGER_SPLIT[query.split] if query.split else "NULL"
    sql = (f"SELECT ts_ms / {query.step} * {query.step}, {split}, "
           "SUM(CASE WHEN decision <> 'credit' THEN 1 ELSE 0 END), "
           f"SUM(CASE WHEN decision IN {REFUSED} THEN 1 ELSE 0 END), "
           "SUM(CASE WHEN flow IS NULL THEN cost ELSE 0 END) "
           f"FROM {source} WHERE ts_ms >= {{m}} AND ts_ms < {{m}} AND ({where}) GROUP BY 1, 2")
    # the scope filter's own marks are the driver's already
    sql = sql.replace("{m}", mark)
    return sql, (query.first, query.until_ms, *args)


def _sums(rows: Any) -> list[Sums]:
    return [(int(start), name, int(requests or 0), int(refused or 0), int(cost or 0))
            for start, name, requests, refused, cost in rows]


def sqlite_series(c: sqlite3.Connection, query: SeriesQuery) -> list[Sums]:
    """A series' sums on SQLite: the rollups (or a key's or tag's ledger rows), and the rows
    still held in reservations (calls in flight, settled ones not moved yet)."""
    where, args = ledger_sql.scope_filter(query.scope)
    with ledger_sql.snapshot(c):
        if from_rollups(query.scope):
            rows = _sums(c.execute(*rollup_query(query)))
        else:
            rows = _sums(c.execute(*ledger_query(query, "ledger", where, args)))
        rows += _sums(c.execute(*ledger_query(query, ledger_sql.HELD_ROWS, where, args)))
    return rows


async def postgres_series(fetchall: Callable[[str, Any], Awaitable[list[Any]]],
                          query: SeriesQuery) -> list[Sums]:
    """A series' sums on PostgreSQL (pending rows are in its ledger, and so its rollups)."""
    if from_rollups(query.scope):
        return _sums(await fetchall(*rollup_query(query, "%s")))
    where, args = ledger_sql.scope_filter(query.scope, "%s")
    return _sums(await fetchall(*ledger_query(query, "ledger", where, args, "%s")))
