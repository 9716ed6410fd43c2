"""The audit ledger in PostgreSQL: written from the hot state's write-ahead log, read for
audit and reports, and read back to rebuild the hot state when Redis lost it.

`apply_wal` is idempotent: a batch applied twice (a retry, or two processes draining the
same log) changes nothing the second time. Rows are inserted once by request id, a
settlement applies only to a row still pending, and an event is announced only by the
process that recorded its coalescing mark first.

One entry PostgreSQL refuses for what it holds (a NUL, which text cannot store, from a
request's model or path) must not hold back the ledger: the batch is halved until that
entry stands alone, every other is written, and it is written with its text made storable
(each NUL or lone surrogate becomes U+FFFD; an idempotency key so changed is left out, so
that it can never match another call's). One refused even then is logged whole and left
out, rather than be retried for ever ahead of everything after it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
import psycopg.errors

from outlay.policy.series import SeriesQuery, Sums
from outlay.state import ledger_sql, rollups_sql
from outlay.state.base import StateError
from outlay.state.postgres.outbox import enqueue, mark_new
from outlay.state.postgres.pool import Cursor, Pooled, state_errors

ROW_COLUMNS = (
    "request_id", "ts_ms", "key_id", "agent", "grp", "labels", "vendor", "model", "route",
    "decision", "code", "scope", "status", "reserved", "cost", "settlement", "spent", "cap",
    "tokens", "worker", "idem", "idem_account", "replay_of", "waited_ms", "held", "estimated",
    "flow",
)
_ZERO = ("reserved", "cost", "tokens")  # NOT NULL: absent means 0
_LABELS_READY = (str, type(None))
_TYPES = {"ts_ms": "bigint", "status": "integer", "reserved": "bigint", "cost": "bigint",
          "spent": "bigint", "cap": "bigint", "tokens": "bigint", "waited_ms": "bigint",
          "held": "bigint", "estimated": "bigint"}
# a batch is one statement whatever its size, in no transaction of its own (a BEGIN and a
# COMMIT were half its round trips): its rows, each passed in one JSON array and read back as
# a set, inserted by a CTE, and its settlements applied by another. The statement's parts
# share one snapshot, so its UPDATE sees no row the same statement inserts: a settlement of
# a row of the batch is merged into the row before (`_merged`), and updates a row that was
# already there (pending from an earlier batch, or from another process's copy). Nor does
# it see a row another process's statement inserted meanwhile (this one's INSERT waited for
# it): the statement returns the settlements that neither their row's insert here nor the
# UPDATE applied, and those are applied again (_SETTLE) by a statement of its own, which
# sees every row committed before it, as the UPDATE of a transaction's second statement did.
_SETTLE_SET = ("jsonb_to_recordset(%s::jsonb) AS s(request_id text, status integer, "
               "cost bigint, settlement text, model text, reserved bigint, tokens bigint)")
_INSERT = (
    f"INSERT INTO ledger({', '.join(ROW_COLUMNS)}) "  # noqa: S608 (fixed columns)
    f"SELECT {', '.join(ROW_COLUMNS)} FROM jsonb_to_recordset(%s::jsonb) AS x("
    + ", ".join(f"{c} {_TYPES.get(c, 'text')}" for c in ROW_COLUMNS)
    + ") ON CONFLICT (request_id) DO NOTHING")
_SET = (
    "UPDATE ledger l SET status = s.status, cost = s.cost, settlement = s.settlement, "
    "model = COALESCE(s.model, l.model), "
    "spent = CASE WHEN l.spent IS NULL THEN NULL ELSE l.spent - s.reserved + s.cost END, "
    "tokens = s.tokens FROM {} WHERE l.request_id = s.request_id AND l.settlement = 'pending'")
_SETTLE = _SET.format(_SETTLE_SET)
_BATCH = (
    f"WITH s AS MATERIALIZED (SELECT * FROM {_SETTLE_SET}), "  # noqa: S608 (fixed text)
    f"inserted AS ({_INSERT} RETURNING request_id), "
    f"settled AS ({_SET.format('s')} RETURNING l.request_id) "
    "SELECT request_id FROM s EXCEPT SELECT request_id FROM inserted "
    "EXCEPT SELECT request_id FROM settled")
log = logging.getLogger("outlay.state")
_RETRIES = 3  # a deadlock between two appliers of overlapping batches is retried


def _row(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the INSERT reads it (jsonb_to_recordset: a column the row lacks is NULL,
    a key no column has is not read). A row as the gateway makes it is taken as it is, not
    copied: every NOT NULL number there, its labels already JSON text."""
    if (row.get("reserved") is not None and row.get("cost") is not None
            and row.get("tokens") is not None and type(row.get("labels")) in _LABELS_READY):
        return row
    params = {c: row.get(c) for c in ROW_COLUMNS}
    for column in _ZERO:
        params[column] = params[column] or 0
    labels = params["labels"]
    if labels is not None and not isinstance(labels, str):
        params["labels"] = orjson.dumps(labels).decode()
    return params


def _settlement(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "request_id": entry["request_id"], "status": entry.get("status") or None,
        "cost": entry.get("cost") or 0, "settlement": entry["settlement"],
        "model": entry.get("model"), "reserved": entry.get("reserved") or 0,
        "tokens": entry.get("tokens") or 0,
    }


def _parts(entries: list[dict[str, Any]]
           ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A batch's rows (the first of a request id wins: every copy of a row is the same
    pending row), settlements and events, in order."""
    rows: dict[str, dict[str, Any]] = {}
    settles: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for entry in entries:
        kind = entry["t"]
        if kind == "row":
            if (request_id := entry["row"]["request_id"]) not in rows:
                rows[request_id] = _row(entry["row"])
        elif kind == "settle":
            settles.append(_settlement(entry))
        elif kind == "event":
            events.append(entry)
        else:
            raise ValueError(f"unknown write-ahead log entry {kind!r}")
    return rows, settles, events


def _merged(rows: dict[str, dict[str, Any]], settles: list[dict[str, Any]]
            ) -> dict[str, dict[str, Any]] | None:
    """The rows with the first settlement of each pending one applied as the UPDATE would
    apply it (copies: the caller's entries stay as they are, to apply again); None when a
    figure is not an integer here (PostgreSQL is left to take or refuse it, as before)."""
    merged = dict(rows)
    for settle in settles:
        row = merged.get(settle["request_id"])
        if row is None or row is not rows[settle["request_id"]] \
                or row.get("settlement") != "pending":
            continue  # not in the batch, settled already here, or not a call held
        spent, reserved, cost = row.get("spent"), settle["reserved"], settle["cost"]
        if type(reserved) is not int or type(cost) is not int or (
                spent is not None and type(spent) is not int):
            return None
        merged[settle["request_id"]] = {
            **row, "status": settle["status"], "cost": cost,
            "settlement": settle["settlement"], "tokens": settle["tokens"],
            "model": row.get("model") if settle["model"] is None else settle["model"],
            "spent": None if spent is None else spent - reserved + cost}
    return merged


async def _apply(cur: Cursor, rows: dict[str, dict[str, Any]], settles: list[dict[str, Any]],
                 events: list[dict[str, Any]]) -> None:
    # In one transaction: rows first, then settlements (each applies once, to a pending
    # row), then events in order. A settlement's entry carries its row, or comes after the
    # row's own entry, so this order never loses one.
    if rows:
        await cur.execute(_INSERT, (orjson.dumps(list(rows.values())).decode(),))
    if settles:
        await cur.execute(_SETTLE, (orjson.dumps(settles).decode(),))
    for e in events:
        if await mark_new(cur, e["mark"], e["ts_ms"]):
            await enqueue(cur, e["ts_ms"], e["type"], e["data"])


def _refused_content(exc: BaseException) -> bool:
    """PostgreSQL (or the encoding before it) refused what an entry holds, not the
    connection: a data exception (class 22) or a broken constraint (class 23)."""
    cause = exc.__cause__ if isinstance(exc, StateError) else exc
    return isinstance(cause, psycopg.DataError | psycopg.IntegrityError
                      | orjson.JSONEncodeError | UnicodeError)


def storable(value: Any) -> Any:
    """`value` with every NUL and lone surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c
                       for c in value)
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _storable_entry(entry: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = storable(entry)
    row = entry.get("row")
    if isinstance(row, dict) and row.get("idem") is not None and \
            cleaned["row"]["idem"] != row["idem"]:
        cleaned["row"]["idem"] = None
    return cleaned


class LedgerMixin(Pooled):
    async def apply_wal(self, entries: list[dict[str, Any]]) -> None:
        """Apply a batch of the hot state's log in one transaction, idempotently; an entry
        PostgreSQL refuses is written on its own (see above)."""
        try:
            await self._apply_batch(entries)
        except (StateError, orjson.JSONEncodeError, UnicodeError) as exc:
            if not _refused_content(exc):
                raise
            await self._apply_apart(entries)

    async def _apply_apart(self, entries: list[dict[str, Any]]) -> None:
        """Halve a batch PostgreSQL refused until the refused entries stand alone, in order
        (a settlement's entry carries its row, or follows it: no half settles a row it lacks
        before the row is written)."""
        if len(entries) > 1:
            half = len(entries) // 2
            for part in (entries[:half], entries[half:]):
                try:
                    await self._apply_batch(part)
                except (StateError, orjson.JSONEncodeError, UnicodeError) as exc:
                    if not _refused_content(exc):
                        raise
                    await self._apply_apart(part)
            return
        (entry,) = entries
        try:
            await self._apply_batch([_storable_entry(entry)])
        except (StateError, orjson.JSONEncodeError, UnicodeError) as exc:
            if not _refused_content(exc):
                raise
            log.error("PostgreSQL refused a ledger entry even with its text made storable; "
                      "it is left out: %r (%s)", entry, exc)

    async def _apply_batch(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        rows, settles, events = _parts(entries)
        merged = None if events else _merged(rows, settles)
        for attempt in range(_RETRIES):
            try:
                if merged is not None:  # the common batch: one statement, atomic alone
                    await self._apply_merged(list(merged.values()), settles)
                else:
                    async with self.tx() as cur:
                        await _apply(cur, rows, settles, events)
                return
            except StateError as exc:
                retry = isinstance(exc.__cause__, psycopg.errors.DeadlockDetected)
                if not retry or attempt == _RETRIES - 1:
                    raise

    async def _apply_merged(self, rows: list[dict[str, Any]], settles: list[dict[str, Any]]
                            ) -> None:
        with state_errors(self._failed):
            async with self.pool.connection() as conn:
                cur = await conn.execute(_BATCH, (orjson.dumps(settles).decode(),
                                                  orjson.dumps(rows).decode()))
                unseen = {request_id for (request_id,) in await cur.fetchall()}
                if unseen:  # a row inserted meanwhile by another, or settled already
                    await conn.execute(_SETTLE, (orjson.dumps(
                        [s for s in settles if s["request_id"] in unseen]).decode(),))

    # -- reading ----------------------------------------------------------------------
    async def audit(self, scope: str | None, limit: int) -> list[dict[str, Any]]:
        where, args = ledger_sql.scope_filter(scope, "%s") if scope else ("TRUE", ())
        rows = await self.fetchall(
            f"SELECT {', '.join(ledger_sql.AUDIT_COLUMNS)} FROM ledger "  # noqa: S608
            f"WHERE {where} ORDER BY ts_ms DESC, seq DESC LIMIT %s", (*args, limit))
        return [ledger_sql.audit_entry(dict(zip(ledger_sql.AUDIT_COLUMNS, r, strict=True)))
                for r in rows]

    async def report(self, group_by: str, since_ms: int | None) -> list[dict[str, Any]]:
        column = ledger_sql.group_column(group_by, sqlite=False)
        rows = await self.fetchall(
            f"SELECT {column}, COUNT(*) FILTER (WHERE decision <> 'credit'), "  # noqa: S608
            "COUNT(*) FILTER (WHERE decision = 'allowed'), "
            "COUNT(*) FILTER (WHERE decision IN ('refused', 'invalid')), "
            f"COALESCE(SUM(cost) FILTER (WHERE {ledger_sql.SPEND}), 0)::bigint, "
            "COUNT(*) FILTER (WHERE settlement = 'unsettled'), "
            "COUNT(*) FILTER (WHERE settlement = 'settled_estimate'), "
            f"COALESCE(SUM(cost) FILTER (WHERE NOT {ledger_sql.SPEND}), 0)::bigint "
            "FROM ledger WHERE ts_ms >= %s GROUP BY "
            f"{column} ORDER BY 5 DESC, {column} COLLATE \"C\" NULLS FIRST",
            (since_ms or 0,))
        return [ledger_sql.report_line(group_by, row) for row in rows]

    async def series(self, query: SeriesQuery) -> list[Sums]:
        return await rollups_sql.postgres_series(self.fetchall, query)

    async def spend_by(self, scope: str, since_ms: int
                       ) -> tuple[dict[str | None, int], dict[str | None, int]]:
        """What a scope spent since `since_ms` (micro-USD), by model and by vendor."""
        where, args = ledger_sql.scope_filter(scope, "%s")
        by_model = await self.fetchall(
            f"SELECT model, SUM(cost)::bigint FROM ledger WHERE {where} AND ts_ms >= %s "  # noqa: S608
            f"AND cost <> 0 AND {ledger_sql.SPEND} AND model IS NOT NULL GROUP BY model "
            'ORDER BY model COLLATE "C"',
            (*args, since_ms))
        by_vendor = await self.fetchall(
            f"SELECT vendor, SUM(cost)::bigint FROM ledger WHERE {where} AND ts_ms >= %s "  # noqa: S608
            f"AND cost <> 0 AND {ledger_sql.SPEND} GROUP BY vendor "
            'ORDER BY vendor COLLATE "C" NULLS FIRST',
            (*args, since_ms))
        return dict(by_model), dict(by_vendor)

    # -- rebuilding the hot state -----------------------------------------------------
    async def committed(self, scope: str, since_ms: int, flow: str = "spend"
                        ) -> tuple[int, int]:
        """A scope's allowed calls of `flow` (spend, or money out) since `since_ms`: the cost
        of those settled (or void, or charged unsettled), less what was given back of them
        (`credit` rows, dated as the charge they return), and the amount still reserved by
        those pending."""
        where, args = ledger_sql.scope_filter(scope, "%s")
        if flow == "spend":
            where += f" AND {ledger_sql.SPEND}"
        else:
            where += " AND flow = %s"
            args = (*args, flow)
        row = await self.fetchone(
            "SELECT COALESCE(SUM(cost) FILTER (WHERE settlement IN "  # noqa: S608
            "('settled', 'settled_estimate', 'unsettled', 'void')), 0)::bigint, "
            "COALESCE(SUM(reserved) FILTER (WHERE settlement = 'pending'), 0)::bigint "
            f"FROM ledger WHERE {where} AND decision IN ('allowed', 'credit') AND ts_ms >= %s",
            (*args, since_ms))
        assert row is not None  # an aggregate always answers one row
        return int(row[0]), int(row[1])

    async def window_counts(
        self, scope: str, since_ms: int, bucket_ms: int, tokens: bool,
    ) -> dict[int, int]:
        """A scope's allowed calls since `since_ms` by bucket (ts_ms // bucket_ms): how many,
        or (tokens) how many tokens they used."""
        where, args = ledger_sql.scope_filter(scope, "%s")
        measure = "COALESCE(SUM(tokens), 0)::bigint" if tokens else "COUNT(*)"
        rows = await self.fetchall(
            f"SELECT ts_ms / %s::bigint, {measure} FROM ledger WHERE {where} "  # noqa: S608
            "AND decision = 'allowed' AND ts_ms >= %s GROUP BY 1",
            (bucket_ms, *args, since_ms))
        return {int(bucket): int(n) for bucket, n in rows}

    async def pending_rows(self) -> list[dict[str, Any]]:
        """Every allowed call not settled yet: the reservations the hot state holds."""
        columns = ("request_id", "ts_ms", "key_id", "agent", "grp", "vendor", "reserved",
                   "tokens", "worker", "idem", "idem_account", "labels", "flow")
        rows = await self.fetchall(
            f"SELECT {', '.join(columns)} FROM ledger "  # noqa: S608 (fixed columns)
            "WHERE settlement = 'pending' AND decision = 'allowed' ORDER BY seq")
        return [dict(zip(columns, r, strict=True)) for r in rows]

    async def tag_values(self, name: str, since_ms: int) -> list[str]:
        """The values of the label `name` the allowed calls since `since_ms` carried."""
        rows = await self.fetchall(
            "SELECT DISTINCT labels::jsonb ->> %s FROM ledger WHERE decision = 'allowed' "
            "AND ts_ms >= %s AND labels IS NOT NULL AND labels::jsonb ? %s",
            (name, since_ms, name))
        return [str(v) for (v,) in rows if v is not None]

    async def idempotency_since(self, since_ms: int) -> list[tuple[str, str, str, str]]:
        """(vendor, account, idem, request_id) of the allowed calls since `since_ms` that
        registered an idempotency key and were not voided (keys kept before they were kept
        by account are left out: their account is unknown)."""
        rows = await self.fetchall(
            "SELECT vendor, idem_account, idem, request_id FROM ledger "
            "WHERE decision = 'allowed' AND idem IS NOT NULL AND idem_account IS NOT NULL "
            "AND settlement <> 'void' AND ts_ms >= %s ORDER BY seq", (since_ms,))
        return [(k, v, i, r) for k, v, i, r in rows]
