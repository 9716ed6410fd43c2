"""Hourly rollups of the ledger (SQLite and PostgreSQL): what a series of spend over time is
read from, instead of a scan of the ledger per request.

`rollups` holds, per scope (`global`, each `agent:<name>` and each `group:<name>`), UTC hour,
vendor, model and refusal code, the sums a series shows: requests (every row but `credit`),
refusals (`refused` and `invalid`), spend and money moved out. A ledger row counts in the
rollups of its three scopes. Triggers on the ledger keep them in the transaction that writes
the rows (each insert, each settlement, any other change as the difference of the row
before and after), so they always equal the ledger's sums. A NULL column is kept as '' (a
primary key needs values); a code only on refusals. An hour of `global` holds a row per
vendor, model and code seen in it, however many agents called: a month by hour reads a few
thousand rows of a million-row ledger. A vendor's series is read from `global`'s rows of
that vendor; a key's or a tag's from the ledger (by its `ledger_key` index, or the range's
rows): a rollup by key would hold a row per per-run key.
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

_KEYS = ("scope", "hour_ms", "vendor", "model", "code")
_SUMS = ("requests", "refused", "cost", "out")
REFUSED = "('refused', 'invalid')"
# the scopes a ledger row counts in: (the scope's text, when the row has one)
_SCOPES = (("'global'", "1=1"), ("'agent:' || {r}.agent", "{r}.agent IS NOT NULL"),
           ("'group:' || {r}.grp", "{r}.grp IS NOT NULL"))


def _key_exprs(row: str, scope: str) -> tuple[str, ...]:
    return (scope.format(r=row), f"{row}.ts_ms / 3600000 * 3600000",
            f"COALESCE({row}.vendor, '')", f"COALESCE({row}.model, '')",
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
_TABLE = f"""CREATE TABLE IF NOT EXISTS rollups (
  scope TEXT NOT NULL, hour_ms BIGINT NOT NULL, vendor TEXT NOT NULL, model TEXT NOT NULL,
  code TEXT NOT NULL,
  requests BIGINT NOT NULL DEFAULT 0, refused BIGINT NOT NULL DEFAULT 0,
  cost BIGINT NOT NULL DEFAULT 0, out BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY ({', '.join(_KEYS)})
)"""


def _sqlite_upserts(row: str, sign: str = "") -> str:
    sums = ", ".join(_sum_exprs(row, sign))
    return "\n  ".join(
        f"INSERT INTO rollups({_COLUMNS}) SELECT {', '.join(_key_exprs(row, scope))}, {sums} "
        f"WHERE {when.format(r=row)}{_UPSERT_TAIL};" for scope, when in _SCOPES)


_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _MOVING)
SQLITE_SCHEMA = f"""
{_TABLE} WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS ledger_rollup_insert AFTER INSERT ON ledger BEGIN
  {_sqlite_upserts("NEW")}
END;
CREATE TRIGGER IF NOT EXISTS ledger_rollup_update AFTER UPDATE OF {', '.join(_MOVING)}
ON ledger WHEN {_CHANGED} BEGIN
  {_sqlite_upserts("OLD", "-")}
  {_sqlite_upserts("NEW")}
END;
CREATE TRIGGER IF NOT EXISTS ledger_rollup_delete AFTER DELETE ON ledger BEGIN
  {_sqlite_upserts("OLD", "-")}
END;
"""

_GROUPED = ", ".join(str(i) for i in range(1, len(_KEYS) + 1))


def _scoped(source: str, sign: str) -> str:
    """A row per ledger row of `source` and scope it counts in: its rollup key and sums."""
    return " UNION ALL ".join(
        "SELECT " + ", ".join(f"{e} AS {c}" for e, c in zip(
            (*_key_exprs("r", scope), *_sum_exprs("r", sign)), (*_KEYS, *_SUMS), strict=True))
        + f" FROM {source} r WHERE {when.format(r='r')}" for scope, when in _SCOPES)


def _summed(deltas: str) -> str:
    return (f"INSERT INTO rollups({_COLUMNS}) SELECT {', '.join(_KEYS)}, "
            + ", ".join(f"SUM({s})" for s in _SUMS)
            + f" FROM ({deltas}) d WHERE true GROUP BY {_GROUPED} ORDER BY {_GROUPED}"
            + _UPSERT_TAIL)


# every rollup made again from the ledger: the migration's back-fill (idempotent)
BACKFILL = f"DELETE FROM rollups;\n{_summed(_scoped('ledger', ''))};\n"

_PG_CHANGED = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in _MOVING)
_PG_MOVED = "old_rows o JOIN new_rows n USING (seq) WHERE " + _PG_CHANGED
# statement triggers over transition tables: one upsert per statement (a batch of the
# write-ahead log), its rows summed by rollup and taken in key order, so that two appliers
# lock rollups in the same order
PG_SCHEMA = f"""
LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE;
{_TABLE};
CREATE FUNCTION ledger_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_summed(_scoped('new_rows', ''))};
  ELSIF TG_OP = 'UPDATE' THEN
    {_summed(_scoped(f'(SELECT o.* FROM {_PG_MOVED})', '-') + ' UNION ALL '
             + _scoped(f'(SELECT n.* FROM {_PG_MOVED})', ''))};
  ELSE
    {_summed(_scoped('old_rows', '-'))};
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
_LEDGER_SPLIT = {"vendor": "vendor", "model": "model", "agent": "agent",
                 "code": f"CASE WHEN decision IN {REFUSED} THEN code END"}


def from_rollups(query: SeriesQuery) -> bool:
    """Whether the rollups answer a series: a global, vendor, agent or group scope, not
    split by agent (but an agent's own). A split by agent reads the range's ledger rows:
    every agent's rollups of the range are nearly as many, and read in a worse order."""
    kind = query.scope.partition(":")[0]
    return (query.scope == "global" or kind in ("vendor", "agent", "group")) and (
        query.split != "agent" or kind == "agent")


def rollup_query(query: SeriesQuery, mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The sums of a series by interval (and split value) from the rollups, for a query
    `from_rollups` takes; `mark`: the driver's placeholder."""
    kind, _, name = query.scope.partition(":")
    args: list[Any] = []
    if kind in ("agent", "group"):
        where, args = "scope = {m}", [query.scope]
    else:
        where = "scope = 'global'"
    if kind == "vendor":
        where += " AND vendor = {m}"
        args.append(name)
    where += " AND hour_ms >= {m} AND hour_ms < {m}"
    args += [query.first, query.until_ms]
    split = ("NULL" if query.split is None else "substr(scope, 7)" if query.split == "agent"
             else f"NULLIF({query.split}, '')")  # agent: of an agent's own scope
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
        if from_rollups(query):
            rows = _sums(c.execute(*rollup_query(query)))
        else:
            rows = _sums(c.execute(*ledger_query(query, "ledger", where, args)))
        rows += _sums(c.execute(*ledger_query(query, ledger_sql.HELD_ROWS, where, args)))
    return rows


async def postgres_series(fetchall: Callable[[str, Any], Awaitable[list[Any]]],
                          query: SeriesQuery) -> list[Sums]:
    """A series' sums on PostgreSQL (pending rows are in its ledger, and so its rollups)."""
    if from_rollups(query):
        return _sums(await fetchall(*rollup_query(query, "%s")))
    where, args = ledger_sql.scope_filter(query.scope, "%s")
    return _sums(await fetchall(*ledger_query(query, "ledger", where, args, "%s")))
