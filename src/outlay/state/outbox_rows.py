"""What the SQL outboxes of both durable stores share: event-type checks and the views of
endpoint, delivery and attempt rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from outlay.policy.decide import iso
from outlay.webhooks.events import ALL, EVENT_TYPES, TEST_EVENT
from outlay.webhooks.outbox import DeliveryJob

MAX_ERROR = 500


def check_event_type(event_type: str) -> None:
    if event_type not in EVENT_TYPES and event_type != TEST_EVENT:
        raise ValueError(f"unknown webhook event type {event_type!r}")


def endpoint_view(row: tuple[Any, ...], now_ms: int) -> dict[str, Any]:
    wid, url, events, created, disabled, reason, previous_until, pending, failed = row
    return {
        "id": wid, "url": url, "events": json.loads(events) or [ALL],
        "created_at": iso(created),
        "disabled_at": None if disabled is None else iso(disabled),
        "disabled_reason": reason,
        "previous_secret_expires_at": (
            iso(previous_until) if previous_until is not None and previous_until > now_ms
            else None),
        "pending": pending, "failed": failed,
    }


def delivery_job(row: tuple[Any, ...], now_ms: int, lease_until_ms: int,
                 opened: Callable[[str], str]) -> DeliveryJob:
    """A claimed delivery from its row: event_id, endpoint_id, url, secret, previous_secret,
    previous_until_ms, body, attempts, created_ms; `opened` unseals a stored secret."""
    event_id, endpoint_id, url, secret, previous, until, body, attempts, created = row
    secrets = ((opened(secret), opened(previous)) if previous and until and until > now_ms
               else (opened(secret),))
    return DeliveryJob(event_id, endpoint_id, url, secrets, body.encode(), attempts, created,
                       lease_until_ms)


def attempt_view(ts_ms: int, status: int | None, error: str | None,
                 duration_ms: int) -> dict[str, Any]:
    return {"at": iso(ts_ms), "status_code": status, "error": error, "duration_ms": duration_ms}


def delivery_view(
    row: tuple[Any, ...], attempts: dict[tuple[str, str], list[dict[str, Any]]],
) -> dict[str, Any]:
    """A delivery from its row (event_id, endpoint_id, type, created_ms, state, attempts,
    next_attempt_ms, last_status, last_error) and the attempt log of every delivery."""
    ev, ep, typ, created, state, n, next_ms, last_status, last_error = row
    return {
        "event_id": ev, "endpoint_id": ep, "type": typ, "created_at": iso(created),
        "state": state, "attempts": n,
        "next_attempt_at": iso(next_ms) if state == "pending" else None,
        "last_status": last_status, "last_error": last_error,
        "attempt_log": attempts.get((ev, ep), []),
    }
