"""The webhook outbox of the embedded store: endpoints, events and their deliveries.

Events are written by `enqueue` inside the transaction that decided them, so an event exists
exactly when its decision committed; delivery workers lease due deliveries, send them and
record every attempt (`webhooks/delivery.py`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from outlay.policy.decide import iso
from outlay.state.base import NotFound
from outlay.state.outbox_rows import (
    MAX_ERROR,
    attempt_view,
    check_event_type,
    delivery_job,
    delivery_view,
    endpoint_view,
)
from outlay.state.sealing import Sealer
from outlay.webhooks.events import (
    ALL,
    check_events,
    check_url,
    new_endpoint_id,
    new_event_id,
    payload,
)
from outlay.webhooks.outbox import DeliveryJob, FinalState
from outlay.webhooks.signing import new_secret

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
  id TEXT PRIMARY KEY, url TEXT NOT NULL,
  events TEXT NOT NULL DEFAULT '["*"]',   -- JSON list of event types; "*" or [] is every event
  secret TEXT NOT NULL,  -- HMAC needs it to sign: sealed when OUTLAY_SECRET_KEY is set
  previous_secret TEXT, previous_until_ms INTEGER,  -- a rotated-out secret, still signing
  disabled_ms INTEGER, disabled_reason TEXT, created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, created_ms INTEGER NOT NULL,
  body TEXT NOT NULL                      -- the payload, signed and sent as these bytes
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created_ms);
CREATE TABLE IF NOT EXISTS deliveries (
  event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL,
  lease_until_ms INTEGER,                 -- a worker is sending it until then
  state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed | disabled
  last_status INTEGER, last_error TEXT,
  PRIMARY KEY (event_id, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_ms) WHERE state='pending';
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries(endpoint_id, state);
CREATE TABLE IF NOT EXISTS delivery_attempts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL, status_code INTEGER, error TEXT, duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_of ON delivery_attempts(event_id, endpoint_id);
"""

def enqueue(
    c: sqlite3.Connection, now_ms: int, event_type: str, data: Mapping[str, Any], *,
    endpoint_id: str | None = None,
) -> str:
    """Put one event in the outbox, due at once for every enabled endpoint whose filter
    takes it (or only for `endpoint_id`, if enabled); returns the event id. Runs inside the caller's
    transaction. An event no endpoint wants is not stored at all."""
    check_event_type(event_type)
    event_id = new_event_id()
    body = payload(event_id, event_type, now_ms, data)
    if endpoint_id is None:
        cur = c.execute(
            "INSERT INTO deliveries(event_id, endpoint_id, next_attempt_ms) "
            "SELECT ?, e.id, ? FROM webhook_endpoints e WHERE e.disabled_ms IS NULL AND "
            "(e.events = '[]' OR EXISTS (SELECT 1 FROM json_each(e.events) j "
            "WHERE j.value IN (?, ?)))", (event_id, now_ms, ALL, event_type))
    else:
        cur = c.execute(
            "INSERT INTO deliveries(event_id, endpoint_id, next_attempt_ms) "
            "SELECT ?, id, ? FROM webhook_endpoints WHERE id = ? AND disabled_ms IS NULL",
            (event_id, now_ms, endpoint_id))
    if cur.rowcount:
        c.execute("INSERT INTO outbox(id, type, created_ms, body) VALUES (?, ?, ?, ?)",
                  (event_id, event_type, now_ms, body))
    return event_id


class _Store(Protocol):
    @property
    def conn(self) -> sqlite3.Connection: ...
    def clock(self) -> int: ...
    def tx(self) -> AbstractContextManager[sqlite3.Connection]: ...
    @property
    def sealer(self) -> Sealer: ...


_ENDPOINT = (
    "SELECT e.id, e.url, e.events, e.created_ms, e.disabled_ms, e.disabled_reason, "
    "e.previous_until_ms, "
    "(SELECT COUNT(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending'), "
    "(SELECT COUNT(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.state = 'failed') "
    "FROM webhook_endpoints e")


# due: pending, its time come, and not leased to a worker (or its lease ran out)
_DUE = ("SELECT 1 FROM deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id "
        "WHERE d.state = 'pending' AND d.next_attempt_ms <= ? "
        "AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= ?) AND e.disabled_ms IS NULL "
        "LIMIT 1")
_CLAIM = (
    "SELECT d.event_id, d.endpoint_id, e.url, e.secret, e.previous_secret, "
    "e.previous_until_ms, o.body, d.attempts, o.created_ms FROM deliveries d "
    "JOIN webhook_endpoints e ON e.id = d.endpoint_id JOIN outbox o ON o.id = d.event_id "
    "WHERE d.state = 'pending' AND d.next_attempt_ms <= ? "
    "AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= ?) AND e.disabled_ms IS NULL "
    "ORDER BY d.next_attempt_ms, o.rowid LIMIT ?")  # due together: in creation order
_ATTEMPTS = ("SELECT event_id, endpoint_id, ts_ms, status_code, error, duration_ms "
             "FROM delivery_attempts")


def _endpoint(c: sqlite3.Connection, endpoint_id: str, now_ms: int) -> dict[str, Any]:
    row = c.execute(_ENDPOINT + " WHERE e.id = ?", (endpoint_id,)).fetchone()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_view(row, now_ms)


class OutboxMixin:
    """Webhook endpoints and the durable outbox, for SqliteStore."""

    async def emit(self: _Store, event_type: str, data: Mapping[str, Any], *,
                   endpoint_id: str | None = None) -> str:
        """An event outside any decision (provider health, `webhooks test`), in its own
        transaction."""
        with self.tx() as c:
            if endpoint_id is not None and c.execute(
                    "SELECT 1 FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone() is None:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            return enqueue(c, self.clock(), event_type, data, endpoint_id=endpoint_id)

    async def add_webhook(self: _Store, url: str, events: list[str]) -> dict[str, Any]:
        """Register an endpoint; the answer carries its secret, which is shown only here."""
        url, events = check_url(url), check_events(events)
        endpoint_id, secret, now = new_endpoint_id(), new_secret(), self.clock()
        with self.tx() as c:
            c.execute("INSERT INTO webhook_endpoints(id, url, events, secret, created_ms) "
                      "VALUES (?, ?, ?, ?, ?)",
                      (endpoint_id, url, json.dumps(events), self.sealer.seal(secret), now))
            view = _endpoint(c, endpoint_id, now)
        return {**view, "secret": secret}

    async def list_webhooks(self: _Store) -> list[dict[str, Any]]:
        now = self.clock()
        rows = self.conn.execute(_ENDPOINT + " ORDER BY e.created_ms, e.id").fetchall()
        return [endpoint_view(r, now) for r in rows]

    async def get_webhook(self: _Store, endpoint_id: str) -> dict[str, Any]:
        return _endpoint(self.conn, endpoint_id, self.clock())

    async def remove_webhook(self: _Store, endpoint_id: str) -> None:
        """Forget an endpoint, with its deliveries and their attempts."""
        with self.tx() as c:
            if c.execute("DELETE FROM webhook_endpoints WHERE id = ?",
                         (endpoint_id,)).rowcount == 0:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            c.execute("DELETE FROM deliveries WHERE endpoint_id = ?", (endpoint_id,))
            c.execute("DELETE FROM delivery_attempts WHERE endpoint_id = ?", (endpoint_id,))

    async def rotate_webhook_secret(
        self: _Store, endpoint_id: str, overlap_s: float = 86_400
    ) -> dict[str, Any]:
        """A new secret, returned only here; the current one keeps signing (beside the new)
        for `overlap_s`, so receivers can switch without missing an event. Only two secrets
        sign at once: a still-overlapping older secret is dropped."""
        if overlap_s < 0:
            raise ValueError("overlap_s must not be negative")
        secret, now = new_secret(), self.clock()
        until = now + round(overlap_s * 1000) if overlap_s > 0 else None
        with self.tx() as c:
            row = c.execute("SELECT secret FROM webhook_endpoints WHERE id = ?",
                            (endpoint_id,)).fetchone()
            if row is None:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            c.execute("UPDATE webhook_endpoints SET secret = ?, previous_secret = ?, "
                      "previous_until_ms = ? WHERE id = ?",
                      (self.sealer.seal(secret), row[0] if until else None, until, endpoint_id))
        return {"id": endpoint_id, "secret": secret,
                "previous_secret_expires_at": None if until is None else iso(until)}

    async def enable_webhook(self: _Store, endpoint_id: str) -> dict[str, Any]:
        """Deliver to a disabled endpoint again, from the next event on (deliveries cut off
        when it was disabled stay 'disabled')."""
        now = self.clock()
        with self.tx() as c:
            if c.execute("UPDATE webhook_endpoints SET disabled_ms = NULL, "
                         "disabled_reason = NULL WHERE id = ?", (endpoint_id,)).rowcount == 0:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            return _endpoint(c, endpoint_id, now)

    async def claim_deliveries(self: _Store, limit: int, lease_ms: int) -> list[DeliveryJob]:
        """Lease up to `limit` due deliveries to the caller; while the lease lasts no other
        worker claims them. A worker that dies mid-send loses its lease, and the delivery
        is sent again: at least once."""
        now = self.clock()
        # a plain read first, so an idle outbox never takes the write lock
        if self.conn.execute(_DUE, (now, now)).fetchone() is None:
            return []
        lease = now + lease_ms
        with self.tx() as c:
            rows = c.execute(_CLAIM, (now, now, limit)).fetchall()
            c.executemany("UPDATE deliveries SET lease_until_ms = ? "
                          "WHERE event_id = ? AND endpoint_id = ?",
                          [(lease, r[0], r[1]) for r in rows])
        return [delivery_job(row, now, lease, self.sealer.open) for row in rows]

    async def record_attempt(
        self: _Store, job: DeliveryJob, status_code: int | None, error: str | None,
        duration_ms: int, next_attempt_ms: int | None, final_state: FinalState | None,
    ) -> None:
        """Record one attempt, and what follows: delivered, failed for good, the endpoint
        disabled (410), or another attempt at `next_attempt_ms`."""
        if final_state is None and next_attempt_ms is None:
            raise ValueError("an attempt is either final or followed by another")
        now = self.clock()
        error = None if error is None else error[:MAX_ERROR]
        key = (job.event_id, job.endpoint_id, job.lease_until_ms)
        # only the worker holding the lease moves the delivery on; every attempt is kept
        with self.tx() as c:
            c.execute(
                "INSERT INTO delivery_attempts(event_id, endpoint_id, ts_ms, status_code, "
                "error, duration_ms) SELECT ?, ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ?)",
                (job.event_id, job.endpoint_id, now, status_code, error, duration_ms,
                 job.endpoint_id))
            if final_state is None:
                c.execute("UPDATE deliveries SET attempts = attempts + 1, last_status = ?, "
                          "last_error = ?, next_attempt_ms = ?, lease_until_ms = NULL "
                          "WHERE event_id = ? AND endpoint_id = ? AND lease_until_ms = ?",
                          (status_code, error, next_attempt_ms, *key))
                return
            c.execute("UPDATE deliveries SET attempts = attempts + 1, last_status = ?, "
                      "last_error = ?, state = ?, lease_until_ms = NULL "
                      "WHERE event_id = ? AND endpoint_id = ? AND lease_until_ms = ?",
                      (status_code, error, final_state, *key))
            if final_state == "disabled":
                c.execute("UPDATE webhook_endpoints SET disabled_ms = COALESCE(disabled_ms, ?),"
                          " disabled_reason = COALESCE(disabled_reason, ?) WHERE id = ?",
                          (now, f"the receiver answered {status_code} Gone for {job.event_id}",
                           job.endpoint_id))
                c.execute("UPDATE deliveries SET state = 'disabled' "
                          "WHERE endpoint_id = ? AND state = 'pending'", (job.endpoint_id,))

    async def list_deliveries(
        self: _Store, endpoint_id: str | None = None, event_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest event first, each with every attempt made."""
        c = self.conn
        if endpoint_id is not None and c.execute(
                "SELECT 1 FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone() is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        rows = c.execute(
            "SELECT d.event_id, d.endpoint_id, o.type, o.created_ms, d.state, d.attempts, "
            "d.next_attempt_ms, d.last_status, d.last_error FROM deliveries d "
            "JOIN outbox o ON o.id = d.event_id "
            "WHERE (?1 IS NULL OR d.endpoint_id = ?1) AND (?2 IS NULL OR d.event_id = ?2) "
            "ORDER BY o.created_ms DESC, d.event_id DESC, d.endpoint_id LIMIT ?3",
            (endpoint_id, event_id, limit)).fetchall()
        attempts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        events = sorted({r[0] for r in rows})
        for start in range(0, len(events), 500):
            chunk = events[start:start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"{_ATTEMPTS} WHERE event_id IN ({marks}) ORDER BY seq"
            for ev, ep, ts, status, err, duration in c.execute(sql, chunk):
                attempts.setdefault((ev, ep), []).append(
                    attempt_view(ts, status, err, duration))
        return [delivery_view(row, attempts) for row in rows]

    async def prune_deliveries(self: _Store, before_ms: int) -> int:
        """Forget events created before `before_ms` that nothing still waits to send,
        with their deliveries and attempts; returns how many events went."""
        with self.tx() as c:
            old = [r[0] for r in c.execute(
                "SELECT o.id FROM outbox o WHERE o.created_ms < ? AND NOT EXISTS "
                "(SELECT 1 FROM deliveries d WHERE d.event_id = o.id AND d.state = 'pending')",
                (before_ms,))]
            for start in range(0, len(old), 500):
                chunk = old[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for table, column in (("delivery_attempts", "event_id"),
                                      ("deliveries", "event_id"), ("outbox", "id")):
                    sql = f"DELETE FROM {table} WHERE {column} IN ({marks})"  # noqa: S608
                    c.execute(sql, chunk)
        return len(old)
