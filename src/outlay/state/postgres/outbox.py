"""The webhook outbox in PostgreSQL: endpoints, events and their deliveries, shared by every
gateway replica.

Events are written by `enqueue` inside the transaction that decided them, as in the embedded
store (`sqlite_outbox.py`, whose views this module reuses). Replicas claim due deliveries
with FOR UPDATE SKIP LOCKED, so each delivery is leased to one worker at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg.types.json import Jsonb

from outlay.policy.decide import iso
from outlay.policy.decision import Event
from outlay.state.base import NotFound
from outlay.state.outbox_rows import (
    MAX_ERROR,
    attempt_view,
    check_event_type,
    delivery_job,
    delivery_view,
    endpoint_view,
)
from outlay.state.postgres.pool import Cursor, Pooled
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


async def enqueue(
    cur: Cursor, now_ms: int, event_type: str, data: Mapping[str, Any], *,
    endpoint_id: str | None = None,
) -> str:
    """Put one event in the outbox, due at once for every enabled endpoint whose filter
    takes it (or only for `endpoint_id`, if enabled); returns the event id. Runs inside the
    caller's transaction. An event no endpoint wants is not stored at all."""
    check_event_type(event_type)
    event_id = new_event_id()
    body = payload(event_id, event_type, now_ms, data)
    if endpoint_id is None:
        await cur.execute(
            "INSERT INTO deliveries(event_id, endpoint_id, next_attempt_ms) "
            "SELECT %s::text, e.id, %s::bigint FROM webhook_endpoints e "
            "WHERE e.disabled_ms IS NULL AND (e.events = '[]'::jsonb OR e.events ?| %s::text[])",
            (event_id, now_ms, [ALL, event_type]))
    else:
        await cur.execute(
            "INSERT INTO deliveries(event_id, endpoint_id, next_attempt_ms) "
            "SELECT %s::text, id, %s::bigint FROM webhook_endpoints "
            "WHERE id = %s AND disabled_ms IS NULL", (event_id, now_ms, endpoint_id))
    if cur.rowcount:
        await cur.execute("INSERT INTO outbox(id, type, created_ms, body) VALUES (%s, %s, %s, %s)",
                          (event_id, event_type, now_ms, body))
    return event_id


async def announce(cur: Cursor, now_ms: int, events: Iterable[Event]) -> int:
    """Put events in the outbox, each coalescing mark once; returns how many were new."""
    sent = 0
    for event in events:
        if await mark_new(cur, event.coalesce, now_ms):
            await enqueue(cur, now_ms, event.type, event.data)
            sent += 1
    return sent


async def mark_new(cur: Cursor, mark: str, now_ms: int) -> bool:
    """Record a coalescing mark; True when nobody had recorded it before."""
    await cur.execute("INSERT INTO event_marks(mark, ts_ms) VALUES (%s, %s) "
                      "ON CONFLICT (mark) DO NOTHING", (mark, now_ms))
    return bool(cur.rowcount)


# the endpoint's filter as JSON text, so the embedded store's view reads it unchanged
_ENDPOINT = (
    "SELECT e.id, e.url, e.events::text, e.created_ms, e.disabled_ms, e.disabled_reason, "
    "e.previous_until_ms, "
    "(SELECT COUNT(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending'), "
    "(SELECT COUNT(*) FROM deliveries d WHERE d.endpoint_id = e.id AND d.state = 'failed') "
    "FROM webhook_endpoints e")

# due: pending, its time come, not leased to a worker (or its lease ran out); rows another
# replica is claiming right now are skipped, not waited for
_CLAIM = """
WITH due AS (
  SELECT d.event_id, d.endpoint_id FROM deliveries d
  JOIN webhook_endpoints e ON e.id = d.endpoint_id JOIN outbox o ON o.id = d.event_id
  WHERE d.state = 'pending' AND d.next_attempt_ms <= %(now)s
    AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= %(now)s) AND e.disabled_ms IS NULL
  ORDER BY d.next_attempt_ms, o.seq LIMIT %(limit)s
  FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET lease_until_ms = %(lease)s
FROM due, webhook_endpoints e, outbox o
WHERE d.event_id = due.event_id AND d.endpoint_id = due.endpoint_id
  AND e.id = d.endpoint_id AND o.id = d.event_id
RETURNING d.event_id, d.endpoint_id, e.url, e.secret, e.previous_secret, e.previous_until_ms,
  o.body, d.attempts, o.created_ms, d.next_attempt_ms, o.seq
"""

_PRUNE = """
WITH old AS (
  SELECT o.id FROM outbox o WHERE o.created_ms < %s AND NOT EXISTS
    (SELECT 1 FROM deliveries d WHERE d.event_id = o.id AND d.state = 'pending')
), attempts AS (
  DELETE FROM delivery_attempts WHERE event_id IN (SELECT id FROM old)
), deliveries AS (
  DELETE FROM deliveries WHERE event_id IN (SELECT id FROM old)
)
DELETE FROM outbox WHERE id IN (SELECT id FROM old)
"""


async def _endpoint(cur: Cursor, endpoint_id: str, now_ms: int) -> dict[str, Any]:
    await cur.execute(_ENDPOINT + " WHERE e.id = %s", (endpoint_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint_view(row, now_ms)


class OutboxMixin(Pooled):
    """Webhook endpoints and the durable outbox (the WebhookStore protocol)."""

    async def emit(self, event_type: str, data: Mapping[str, Any], *,
                   endpoint_id: str | None = None) -> str:
        """An event outside any decision (provider health, `webhooks test`), in its own
        transaction."""
        async with self.tx() as cur:
            if endpoint_id is not None:
                await cur.execute("SELECT 1 FROM webhook_endpoints WHERE id = %s",
                                  (endpoint_id,))
                if await cur.fetchone() is None:
                    raise NotFound(f"no webhook endpoint {endpoint_id}")
            return await enqueue(cur, self.clock(), event_type, data, endpoint_id=endpoint_id)

    async def add_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        """Register an endpoint; the answer carries its secret, which is shown only here."""
        url, events = check_url(url), check_events(events)
        endpoint_id, secret, now = new_endpoint_id(), new_secret(), self.clock()
        async with self.tx() as cur:
            await cur.execute("INSERT INTO webhook_endpoints(id, url, events, secret, "
                              "created_ms) VALUES (%s, %s, %s, %s, %s)",
                              (endpoint_id, url, Jsonb(events), self.sealer.seal(secret), now))
            view = await _endpoint(cur, endpoint_id, now)
        return {**view, "secret": secret}

    async def list_webhooks(self) -> list[dict[str, Any]]:
        now = self.clock()
        rows = await self.fetchall(_ENDPOINT + ' ORDER BY e.created_ms, e.id COLLATE "C"')
        return [endpoint_view(r, now) for r in rows]

    async def get_webhook(self, endpoint_id: str) -> dict[str, Any]:
        now = self.clock()
        row = await self.fetchone(_ENDPOINT + " WHERE e.id = %s", (endpoint_id,))
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return endpoint_view(row, now)

    async def remove_webhook(self, endpoint_id: str) -> None:
        """Forget an endpoint, with its deliveries and their attempts."""
        async with self.tx() as cur:
            await cur.execute("DELETE FROM webhook_endpoints WHERE id = %s", (endpoint_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            await cur.execute("DELETE FROM deliveries WHERE endpoint_id = %s", (endpoint_id,))
            await cur.execute("DELETE FROM delivery_attempts WHERE endpoint_id = %s",
                              (endpoint_id,))

    async def rotate_webhook_secret(
        self, endpoint_id: str, overlap_s: float = 86_400
    ) -> dict[str, Any]:
        """A new secret, returned only here; the current one keeps signing (beside the new)
        for `overlap_s`. Only two secrets sign at once."""
        if overlap_s < 0:
            raise ValueError("overlap_s must not be negative")
        secret, now = new_secret(), self.clock()
        until = now + round(overlap_s * 1000) if overlap_s > 0 else None
        async with self.tx() as cur:
            await cur.execute("SELECT secret FROM webhook_endpoints WHERE id = %s FOR UPDATE",
                              (endpoint_id,))
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            await cur.execute("UPDATE webhook_endpoints SET secret = %s, previous_secret = %s, "
                              "previous_until_ms = %s WHERE id = %s",
                              (self.sealer.seal(secret), row[0] if until else None, until,
                               endpoint_id))
        return {"id": endpoint_id, "secret": secret,
                "previous_secret_expires_at": None if until is None else iso(until)}

    async def enable_webhook(self, endpoint_id: str) -> dict[str, Any]:
        """Deliver to a disabled endpoint again, from the next event on."""
        now = self.clock()
        async with self.tx() as cur:
            await cur.execute("UPDATE webhook_endpoints SET disabled_ms = NULL, "
                              "disabled_reason = NULL WHERE id = %s", (endpoint_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no webhook endpoint {endpoint_id}")
            return await _endpoint(cur, endpoint_id, now)

    async def claim_deliveries(self, limit: int, lease_ms: int) -> list[DeliveryJob]:
        """Lease up to `limit` due deliveries to the caller; while the lease lasts no other
        worker, on any replica, claims them. A worker that dies mid-send loses its lease and
        the delivery is sent again: at least once."""
        now = self.clock()
        lease = now + lease_ms
        rows = await self.fetchall(_CLAIM, {"now": now, "limit": limit, "lease": lease})
        rows.sort(key=lambda r: (r[9], r[10]))  # RETURNING keeps no order: due first
        return [delivery_job(r[:9], now, lease, self.sealer.open) for r in rows]

    async def record_attempt(
        self, job: DeliveryJob, status_code: int | None, error: str | None,
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
        async with self.tx() as cur:
            await cur.execute(
                "INSERT INTO delivery_attempts(event_id, endpoint_id, ts_ms, status_code, "
                "error, duration_ms) SELECT %s::text, %s::text, %s::bigint, %s::integer, "
                "%s::text, %s::bigint WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = %s)",
                (job.event_id, job.endpoint_id, now, status_code, error, duration_ms,
                 job.endpoint_id))
            if final_state is None:
                await cur.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, last_status = %s, "
                    "last_error = %s, next_attempt_ms = %s, lease_until_ms = NULL "
                    "WHERE event_id = %s AND endpoint_id = %s AND lease_until_ms = %s",
                    (status_code, error, next_attempt_ms, *key))
                return
            await cur.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_status = %s, "
                "last_error = %s, state = %s, lease_until_ms = NULL "
                "WHERE event_id = %s AND endpoint_id = %s AND lease_until_ms = %s",
                (status_code, error, final_state, *key))
            if final_state == "disabled":
                await cur.execute(
                    "UPDATE webhook_endpoints SET disabled_ms = COALESCE(disabled_ms, %s), "
                    "disabled_reason = COALESCE(disabled_reason, %s) WHERE id = %s",
                    (now, f"the receiver answered {status_code} Gone for {job.event_id}",
                     job.endpoint_id))
                await cur.execute("UPDATE deliveries SET state = 'disabled' "
                                  "WHERE endpoint_id = %s AND state = 'pending'",
                                  (job.endpoint_id,))

    async def list_deliveries(
        self, endpoint_id: str | None = None, event_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest event first, each with every attempt made."""
        if endpoint_id is not None and await self.fetchone(
                "SELECT 1 FROM webhook_endpoints WHERE id = %s", (endpoint_id,)) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        rows = await self.fetchall(
            "SELECT d.event_id, d.endpoint_id, o.type, o.created_ms, d.state, d.attempts, "
            "d.next_attempt_ms, d.last_status, d.last_error FROM deliveries d "
            "JOIN outbox o ON o.id = d.event_id "
            "WHERE (%(ep)s::text IS NULL OR d.endpoint_id = %(ep)s) "
            "AND (%(ev)s::text IS NULL OR d.event_id = %(ev)s) "
            'ORDER BY o.created_ms DESC, d.event_id COLLATE "C" DESC, '
            'd.endpoint_id COLLATE "C" LIMIT %(limit)s',
            {"ep": endpoint_id, "ev": event_id, "limit": limit})
        attempts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        if rows:
            for ev, ep, ts, status, err, duration in await self.fetchall(
                    "SELECT event_id, endpoint_id, ts_ms, status_code, error, duration_ms "
                    "FROM delivery_attempts WHERE event_id = ANY(%s) ORDER BY seq",
                    (sorted({r[0] for r in rows}),)):
                attempts.setdefault((ev, ep), []).append(attempt_view(ts, status, err, duration))
        return [delivery_view(row, attempts) for row in rows]

    async def prune_deliveries(self, before_ms: int) -> int:
        """Forget events created before `before_ms` that nothing still waits to send,
        with their deliveries and attempts; returns how many events went."""
        async with self.tx() as cur:
            await cur.execute(_PRUNE, (before_ms,))
            return cur.rowcount
