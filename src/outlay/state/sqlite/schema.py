"""The embedded store's schema, applied idempotently when a store opens."""

from __future__ import annotations

import sqlite3

from outlay.state.rollups_sql import BACKFILL
from outlay.state.rollups_sql import SQLITE_SCHEMA as ROLLUPS_SCHEMA
from outlay.state.sqlite.access import ACCESS_SCHEMA
from outlay.state.sqlite.events_schema import APPROVAL_COLUMNS_V4, EVENTS_SCHEMA
from outlay.state.sqlite.exposure import EXPOSURE_SCHEMA
from outlay.state.sqlite.outbox import OUTBOX_SCHEMA
from outlay.state.sqlite.repeats import REPEATS_SCHEMA
from outlay.state.sqlite.windows_sql import WINDOW_START

SCHEMA_VERSION = 11

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # NORMAL in WAL mode: a commit survives a crash of the process (kill -9); only an OS
    # crash or power loss can drop the last transactions.
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
)

# every call writes its reservation and its settlement changes it: WITHOUT ROWID keeps that
# to one b-tree (a rowid table would add the index of its TEXT primary key)
_RESERVATIONS_V2 = """CREATE TABLE IF NOT EXISTS reservations (
  id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, lease_ms INTEGER NOT NULL,
  worker TEXT NOT NULL, amount INTEGER NOT NULL, tokens INTEGER NOT NULL,
  holds TEXT NOT NULL, tpm TEXT NOT NULL, parallel TEXT NOT NULL
) WITHOUT ROWID"""
# version 3: a reservation also holds its call's ledger row, written to the ledger some time
# after the call is settled (status, cost and settlement set then), so that a call writes
# the ledger and its five indexes once per batch of calls rather than once per call
_LEDGER_COLUMNS_V3 = (
    "seq INTEGER", "key_id TEXT", "agent TEXT", "grp TEXT", "labels TEXT", "vendor TEXT",
    "model TEXT", "route TEXT", "code TEXT", "spent INTEGER", "cap INTEGER",
    "status INTEGER", "cost INTEGER", "settlement TEXT")
_RESERVATIONS = _RESERVATIONS_V2.replace(
    "parallel TEXT NOT NULL\n", "parallel TEXT NOT NULL,\n  "
    + ", ".join(_LEDGER_COLUMNS_V3) + "\n")
# version 5: a vendor's idempotency keys are its account's (the configured credential, and a
# connected account), whichever Outlay key sends them; a replay's row names the first call
_REPLAYS = """CREATE TABLE IF NOT EXISTS replays (
  vendor TEXT NOT NULL, account TEXT NOT NULL, idem TEXT NOT NULL, request_id TEXT NOT NULL,
  key_id TEXT NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (vendor, account, idem)
) WITHOUT ROWID"""
_LEDGER_COLUMNS_V5 = ("replay_of TEXT",)
# version 6: how long a call waited for calls in flight to settle; a refusal's row says what
# the call may cost and, for a budget, what calls in flight held beside the spend
_RESERVATION_COLUMNS_V6 = ("waited_ms INTEGER",)
_LEDGER_COLUMNS_V6 = (*_RESERVATION_COLUMNS_V6, "held INTEGER", "estimated INTEGER")
_RESERVATIONS = _RESERVATIONS.replace(
    "settlement TEXT\n",
    "settlement TEXT, " + ", ".join((*_LEDGER_COLUMNS_V5, *_RESERVATION_COLUMNS_V6)) + "\n")
# version 7: whether a reservation's call was forwarded (0 until its worker marks it, just
# before sending it; NULL, of a reservation made before, counts as forwarded): the reaper
# voids a dead worker's call never sent instead of charging it in full
_RESERVATION_COLUMNS_V7 = ("forwarded INTEGER",)
_RESERVATIONS = _RESERVATIONS.replace(
    "waited_ms INTEGER\n", "waited_ms INTEGER, " + ", ".join(_RESERVATION_COLUMNS_V7) + "\n")
# version 8: which flow a call's cost is (NULL: spend; 'out': money moved out of the
# account), so that counters are rebuilt by flow and reports keep the two apart
_LEDGER_COLUMNS_V8 = ("flow TEXT",)
_RESERVATIONS = _RESERVATIONS.replace(
    "forwarded INTEGER\n", "forwarded INTEGER, " + ", ".join(_LEDGER_COLUMNS_V8) + "\n")
# version 10: a scope's rate windows are rows of `counters` (windows_sql) rather than of a
# table of their own, so that a call's windows and its key's budget counter share a page: a
# decision's commit writes one page fewer to the WAL
_COUNTERS = """CREATE TABLE IF NOT EXISTS counters (
  scope TEXT NOT NULL, period TEXT NOT NULL, period_start INTEGER NOT NULL,
  spent INTEGER NOT NULL DEFAULT 0, reserved INTEGER NOT NULL DEFAULT 0, state BLOB,
  PRIMARY KEY (scope, period, period_start)
) WITHOUT ROWID"""
_COUNTER_COLUMNS_V10 = ("state BLOB",)
# version 11: a call's forwarded mark is its reservation's number (`seq`) in
# `forwarded_calls` (ledger_sql.FORWARD_MARK) rather than the reservation's `forwarded` flag,
# no longer written nor read: a batch's marks then write one page instead of every page
# their reservations are on. A reservation without a number (from before version 3)
# counts as sent, as a NULL flag did.
_FORWARDED_CALLS = "CREATE TABLE IF NOT EXISTS forwarded_calls (seq INTEGER PRIMARY KEY)"
# partial: the calls of agents in no group do not write it (`grp = ?` still uses it)
_LEDGER_GRP = ("CREATE INDEX IF NOT EXISTS ledger_grp ON ledger(grp, ts_ms) "
               "WHERE grp IS NOT NULL")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
  name TEXT PRIMARY KEY, grp TEXT REFERENCES groups(name), created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, agent TEXT NOT NULL REFERENCES agents(name),
  name TEXT, labels TEXT NOT NULL DEFAULT '{}', created_ms INTEGER NOT NULL,
  expires_ms INTEGER, revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS keys_agent ON keys(agent);
CREATE INDEX IF NOT EXISTS keys_created ON keys(created_ms);
CREATE TABLE IF NOT EXISTS policies (
  scope TEXT PRIMARY KEY, body TEXT NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inflight (scope TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
{counters};
{reservations};
{forwarded_calls};
{replays};
CREATE INDEX IF NOT EXISTS replays_request ON replays(request_id);
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, heartbeat_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL UNIQUE,
  ts_ms INTEGER NOT NULL,
  key_id TEXT, agent TEXT, grp TEXT, labels TEXT,
  vendor TEXT, model TEXT, route TEXT,
  decision TEXT NOT NULL,            -- allowed | refused | invalid
  code TEXT, scope TEXT,             -- the refusal's code and the scope that refused
  status INTEGER,                    -- HTTP status returned to the agent
  reserved INTEGER NOT NULL DEFAULT 0,
  cost INTEGER NOT NULL DEFAULT 0,
  settlement TEXT NOT NULL,          -- pending | settled | void | unsettled | none
  spent INTEGER, cap INTEGER,        -- the tightest hard budget: committed spend and cap
  replay_of TEXT,                    -- an idempotent replay: the call it repeats
  waited_ms INTEGER,                 -- how long it waited for calls in flight to settle
  held INTEGER,                      -- a budget refusal: what calls in flight held
  estimated INTEGER,                 -- a refusal: the most the call may cost
  flow TEXT                          -- NULL: spend; 'out': money moved out of the account
);
CREATE INDEX IF NOT EXISTS ledger_key ON ledger(key_id, ts_ms);
CREATE INDEX IF NOT EXISTS ledger_agent ON ledger(agent, ts_ms);
{ledger_grp};
CREATE INDEX IF NOT EXISTS ledger_vendor ON ledger(vendor, ts_ms);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger(ts_ms);
""".replace("{reservations}", _RESERVATIONS).replace("{ledger_grp}", _LEDGER_GRP).replace(
    "{replays}", _REPLAYS).replace("{counters}", _COUNTERS).replace(
    "{forwarded_calls}", _FORWARDED_CALLS)


def _v2(conn: sqlite3.Connection) -> None:
    """Reservations WITHOUT ROWID, and the group index partial: two b-trees fewer written
    by a call of an agent in no group."""
    conn.execute("ALTER TABLE reservations RENAME TO reservations_v1")
    conn.execute(_RESERVATIONS_V2)
    conn.execute("INSERT INTO reservations SELECT id, created_ms, lease_ms, worker, amount, "
                 "tokens, holds, tpm, parallel FROM reservations_v1")
    conn.execute("DROP TABLE reservations_v1")
    conn.execute("DROP INDEX ledger_grp")
    conn.execute(_LEDGER_GRP)


def _v3(conn: sqlite3.Connection) -> None:
    """Reservations hold their call's ledger row: the pending rows move out of the ledger."""
    for column in _LEDGER_COLUMNS_V3:
        conn.execute(f"ALTER TABLE reservations ADD COLUMN {column}")
    conn.execute(
        "UPDATE reservations SET (seq, key_id, agent, grp, labels, vendor, model, route, code, "
        "spent, cap) = (SELECT seq, key_id, agent, grp, labels, vendor, model, route, code, "
        "spent, cap FROM ledger WHERE ledger.request_id = reservations.id)")
    conn.execute("DELETE FROM ledger WHERE settlement = 'pending' "
                 "AND request_id IN (SELECT id FROM reservations)")


def _v4(conn: sqlite3.Connection) -> None:
    """Approvals record the breaches they let through, their expiry and their use."""
    for column in APPROVAL_COLUMNS_V4:
        conn.execute(f"ALTER TABLE approvals ADD COLUMN {column}")


def _v5(conn: sqlite3.Connection) -> None:
    """Idempotency keys by vendor account (the table SCHEMA made); the keys kept by Outlay
    key cannot be told their account, so they are dropped; ledger rows name what they
    replay."""
    conn.execute("DROP TABLE IF EXISTS idempotency")
    for table in ("ledger", "reservations"):
        for column in _LEDGER_COLUMNS_V5:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _v6(conn: sqlite3.Connection) -> None:
    """Rows say how long a call waited for calls in flight, and a refusal's what the call
    may cost and what calls in flight held."""
    for column in _LEDGER_COLUMNS_V6:
        conn.execute(f"ALTER TABLE ledger ADD COLUMN {column}")
    for column in _RESERVATION_COLUMNS_V6:
        conn.execute(f"ALTER TABLE reservations ADD COLUMN {column}")


# the values each `tag:<name>=*` policy tracks in its period (state/sqlite/tagged.py)
TAG_VALUES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag_values (
  name TEXT NOT NULL, period_start INTEGER NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (name, period_start, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tag_value_counts (
  name TEXT NOT NULL, period_start INTEGER NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (name, period_start)
) WITHOUT ROWID;
"""


def _v7(conn: sqlite3.Connection) -> None:
    """Reservations say whether their call was forwarded (those held now: NULL, forwarded)."""
    for column in _RESERVATION_COLUMNS_V7:
        conn.execute(f"ALTER TABLE reservations ADD COLUMN {column}")


def _v8(conn: sqlite3.Connection) -> None:
    """Rows say which flow their cost is (those written before: NULL, spend). A table an
    earlier step made anew (reservations, from version 2) has the column already."""
    for table in ("ledger", "reservations"):
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column in _LEDGER_COLUMNS_V8:
            if column.split()[0] not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _v9(conn: sqlite3.Connection) -> None:
    """Hourly rollups of the ledger (the table and its triggers SCHEMA made), back-filled
    from the rows already written."""
    for statement in BACKFILL.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _v10(conn: sqlite3.Connection) -> None:
    """Rate windows move into `counters` (a file whose counters have the column already,
    made by this version, has no windows table either)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(counters)")}
    for column in _COUNTER_COLUMNS_V10:
        if column.split()[0] not in have:
            conn.execute(f"ALTER TABLE counters ADD COLUMN {column}")
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE type='table' AND name='windows'"
                    ).fetchone():
        conn.execute("INSERT INTO counters(scope, period, period_start, state) "
                     "SELECT scope, name, ?, state FROM windows", (WINDOW_START,))
        conn.execute("DROP TABLE windows")


def _v11(conn: sqlite3.Connection) -> None:
    """Forwarded marks move to `forwarded_calls` (the table SCHEMA made): those of the calls
    still held, their flag 1, or NULL (held from before version 7: counted as sent)."""
    conn.execute("INSERT OR IGNORE INTO forwarded_calls(seq) SELECT seq FROM reservations "
                 "WHERE settlement IS NULL AND forwarded IS NOT 0 AND seq IS NOT NULL")


# what turns a file of the version before each into that version, in order
MIGRATIONS = {2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7, 8: _v8, 9: _v9, 10: _v10,
              11: _v11}


def _as_is(value: None) -> None:
    return value


def bind_as_is() -> None:
    """Bind None and bytes without looking for an adapter. The sqlite3 module binds only
    int, float, str and bytearray directly: every other value goes through its adapter
    registry, whose misses raise (and drop) an AttributeError each, so a None or a bytes
    (reservations hold JSON as bytes) cost more to bind than a statement's step. Identity
    adapters bind them exactly as before (NULL, BLOB); they are the sqlite3 module's,
    process-wide, and change no value for any connection."""
    sqlite3.register_adapter(type(None), _as_is)
    sqlite3.register_adapter(bytes, bytes)  # bytes(b) is b


def apply(conn: sqlite3.Connection) -> None:
    bind_as_is()
    for pragma in PRAGMAS:
        conn.execute(pragma)
    # every statement is IF NOT EXISTS, so workers opening the file at once cannot clash
    conn.executescript(SCHEMA + EVENTS_SCHEMA + OUTBOX_SCHEMA + EXPOSURE_SCHEMA
                       + TAG_VALUES_SCHEMA + ACCESS_SCHEMA + ROLLUPS_SCHEMA + REPEATS_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta(k, v) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"the state file has schema version {row[0]}, newer than this Outlay knows "
                f"({SCHEMA_VERSION}); upgrade Outlay"
            )
        elif int(row[0]) < SCHEMA_VERSION:
            for version in range(int(row[0]) + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](conn)
            conn.execute("UPDATE meta SET v=? WHERE k='schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
