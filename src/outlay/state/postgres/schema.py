"""The PostgreSQL durable store's schema, as versioned migrations.

Each migration runs in a transaction of its own and is recorded in `schema_migrations`.
Replicas starting together take a transaction-level advisory lock first, so exactly one of
them applies a migration and the others find it done. A database migrated by a newer Outlay
is refused rather than written in a layout this code does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

from outlay.state.base import StateError
from outlay.state.postgres.pool import connect, described, state_errors
from outlay.state.rollups_sql import PG_SCHEMA as _V7


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


# Money is BIGINT micro-USD and time BIGINT Unix ms, as in the embedded store. Text columns
# holding JSON (labels, policy bodies, approval requests, outbox bodies) stay text so both
# stores read them with the same code; an endpoint's event filter is JSONB to be queried.
_V1 = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE groups (name TEXT PRIMARY KEY, created_ms BIGINT NOT NULL);
CREATE TABLE agents (
  name TEXT PRIMARY KEY, grp TEXT REFERENCES groups(name), created_ms BIGINT NOT NULL
);
CREATE TABLE keys (
  id TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- creation order among equal created_ms
  hash TEXT NOT NULL UNIQUE, agent TEXT NOT NULL REFERENCES agents(name),
  name TEXT, labels TEXT NOT NULL DEFAULT '{}', created_ms BIGINT NOT NULL,
  expires_ms BIGINT, revoked_ms BIGINT
);
CREATE INDEX keys_agent ON keys(agent);
CREATE TABLE policies (scope TEXT PRIMARY KEY, body TEXT NOT NULL, updated_ms BIGINT NOT NULL);

CREATE TABLE ledger (
  seq BIGSERIAL PRIMARY KEY,
  request_id TEXT NOT NULL UNIQUE,
  ts_ms BIGINT NOT NULL,
  key_id TEXT, agent TEXT, grp TEXT, labels TEXT,
  vendor TEXT, model TEXT, route TEXT,
  decision TEXT NOT NULL,            -- allowed | refused | invalid
  code TEXT, scope TEXT,             -- the refusal's code and the scope that refused
  status INTEGER,                    -- HTTP status returned to the agent
  reserved BIGINT NOT NULL DEFAULT 0,
  cost BIGINT NOT NULL DEFAULT 0,
  settlement TEXT NOT NULL,          -- pending | settled | void | unsettled | none
  spent BIGINT, cap BIGINT,          -- the tightest hard budget: committed spend and cap
  tokens BIGINT NOT NULL DEFAULT 0,  -- reserved against tpm, then the actual ones
  worker TEXT,                       -- the gateway process holding the reservation
  idem TEXT                          -- the vendor idempotency key (Stripe's Idempotency-Key)
);
CREATE INDEX ledger_key ON ledger(key_id, ts_ms);
CREATE INDEX ledger_agent ON ledger(agent, ts_ms);
CREATE INDEX ledger_grp ON ledger(grp, ts_ms);
CREATE INDEX ledger_vendor ON ledger(vendor, ts_ms);
CREATE INDEX ledger_ts ON ledger(ts_ms);
-- rebuilding the hot state reads every reservation still open
CREATE INDEX ledger_pending ON ledger(seq) WHERE settlement = 'pending';

CREATE TABLE event_marks (mark TEXT PRIMARY KEY, ts_ms BIGINT NOT NULL);
CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  created_ms BIGINT NOT NULL, key_id TEXT NOT NULL, agent TEXT NOT NULL,
  scope TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL,
  estimated BIGINT NOT NULL, request TEXT NOT NULL,
  state TEXT NOT NULL,               -- pending | approved | denied | used
  decided_ms BIGINT, note TEXT, used_by TEXT
);
CREATE INDEX approvals_state ON approvals(state, created_ms);

CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY, url TEXT NOT NULL,
  events JSONB NOT NULL DEFAULT '["*"]',  -- event types; "*" or [] is every event
  secret TEXT NOT NULL,                   -- kept in clear: HMAC needs it to sign
  previous_secret TEXT, previous_until_ms BIGINT,  -- a rotated-out secret, still signing
  disabled_ms BIGINT, disabled_reason TEXT, created_ms BIGINT NOT NULL
);
CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,  -- events due together go out in this order
  type TEXT NOT NULL, created_ms BIGINT NOT NULL,
  body TEXT NOT NULL                      -- the payload, signed and sent as these bytes
);
CREATE INDEX outbox_created ON outbox(created_ms);
CREATE TABLE deliveries (
  event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms BIGINT NOT NULL,
  lease_until_ms BIGINT,                  -- a worker is sending it until then
  state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed | disabled
  last_status INTEGER, last_error TEXT,
  PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_ms) WHERE state = 'pending';
CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state);
CREATE TABLE delivery_attempts (
  seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
  ts_ms BIGINT NOT NULL, status_code INTEGER, error TEXT, duration_ms BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_of ON delivery_attempts(event_id, endpoint_id);
"""

# an approval records the breaches it lets through ([[scope, code], …]), its expiry, its use
_V2 = """
ALTER TABLE approvals ADD COLUMN breaches TEXT;
ALTER TABLE approvals ADD COLUMN expires_ms BIGINT;
ALTER TABLE approvals ADD COLUMN used_ms BIGINT;
"""

# a vendor's idempotency keys are its account's (a fingerprint of the credential, and of a
# connected account), whichever key sends them; a replay's row names the call it repeats
_V3 = """
ALTER TABLE ledger ADD COLUMN idem_account TEXT;
ALTER TABLE ledger ADD COLUMN replay_of TEXT;
"""

# how long a call waited for calls in flight to settle; a refusal's row: what the call may
# cost and, for a budget, what calls in flight held beside the spend
_V4 = """
ALTER TABLE ledger ADD COLUMN waited_ms BIGINT;
ALTER TABLE ledger ADD COLUMN held BIGINT;
ALTER TABLE ledger ADD COLUMN estimated BIGINT;
"""

# admin tokens with roles and scopes (hashed), and the admin audit trail, which refuses
# UPDATE and DELETE to any statement
_V5 = """
CREATE TABLE admin_tokens (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
  scopes JSONB NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT
);
CREATE TABLE admin_audit (
  seq BIGSERIAL PRIMARY KEY, ts_ms BIGINT NOT NULL, token_id TEXT, token_name TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, agent TEXT, grp TEXT, before JSONB,
  after JSONB, status INTEGER NOT NULL
);
CREATE INDEX admin_audit_target ON admin_audit(target, seq);
CREATE FUNCTION admin_audit_unchangeable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the admin audit cannot be changed'; END $$;
CREATE TRIGGER admin_audit_no_change BEFORE UPDATE OR DELETE ON admin_audit
FOR EACH ROW EXECUTE FUNCTION admin_audit_unchangeable();
"""

# which flow a call's cost is (NULL: spend; 'out': money moved out of the account)
_V6 = """
ALTER TABLE ledger ADD COLUMN flow TEXT;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "keys, agents, groups, policies, ledger, approvals and the webhook outbox",
              _V1),
    Migration(2, "approvals: the breaches they let through, expiry and use", _V2),
    Migration(3, "ledger: idempotency keys by vendor account; what a replay repeats", _V3),
    Migration(4, "ledger: waits for calls in flight; what a refused call may cost and what "
              "calls in flight held", _V4),
    Migration(5, "admin tokens with roles and scopes; the admin audit trail", _V5),
    Migration(6, "ledger: which flow a call's cost is (spend, or money moved out)", _V6),
    # hourly sums of the ledger kept by triggers, back-filled from the rows already written
    Migration(7, "rollups: the ledger's hourly sums, for spend over time", _V7),
)
LATEST = MIGRATIONS[-1].version

# pg_advisory_xact_lock's key: any constant, the same in every Outlay ("outlay" in ASCII)
_LOCK = 0x6F75746C6179

_TRACK = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY, description TEXT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


async def apply_migrations(conn: psycopg.AsyncConnection[TupleRow]) -> list[int]:
    """Bring the database to LATEST on an autocommit connection; returns the versions
    applied (none when it was up to date)."""
    applied = []
    for migration in (None, *MIGRATIONS):  # None: only take stock (and refuse a newer one)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            await conn.execute(_TRACK)
            current = await _current(conn)
            if current > LATEST:
                raise StateError(
                    f"the PostgreSQL database has schema version {current}, newer than this "
                    f"Outlay knows ({LATEST}); upgrade Outlay")
            if migration is None or migration.version <= current:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations(version, description) VALUES (%s, %s)",
                (migration.version, migration.description))
            applied.append(migration.version)
    return applied


async def _current(conn: psycopg.AsyncConnection[TupleRow]) -> int:
    cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(dsn: str) -> list[int]:
    """Apply the migrations a database lacks; returns their versions (empty: up to date)."""
    with state_errors(f"cannot migrate the PostgreSQL database {described(dsn)}"):
        async with await connect(dsn) as conn:
            return await apply_migrations(conn)


async def schema_version(dsn: str) -> int:
    """The version a database is at; 0 when Outlay never migrated it."""
    with state_errors(f"cannot read the schema version of {described(dsn)}"):
        async with await connect(dsn) as conn:
            cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            row = await cur.fetchone()
            if not (row and row[0]):
                return 0
            return await _current(conn)
