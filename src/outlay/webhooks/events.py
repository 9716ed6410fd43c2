"""The events webhooks announce (SPEC §5), the payload they travel in, and the checks on
what an endpoint subscribes to. Pure: no I/O."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

EVENT_TYPES = (
    "budget.warning", "budget.exceeded", "agent.rate_limited", "key.revoked", "key.expired",
    "approval.requested", "approval.decided", "provider.unhealthy", "provider.recovered",
    "budget.exceeded.shadow", "agent.rate_limited.shadow", "budget.downgraded",
    "agent.loop_detected", "agent.loop_detected.shadow",
)
# sent only by `outlay webhooks test`, only to the endpoint named; no filter selects it
TEST_EVENT = "webhook.test"
ALL = "*"
MAX_URL = 2048


class WebhookError(ValueError):
    """An endpoint's URL or event filter is not acceptable; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def new_endpoint_id() -> str:
    return "wh_" + secrets.token_hex(8)


def check_url(url: object) -> str:
    """An absolute http or https URL with a host."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookError("url is required: the http(s) address to deliver events to", "url")
    url = url.strip()
    if len(url) > MAX_URL or any(ch.isspace() for ch in url):
        raise WebhookError(f"url must be one http(s) URL of at most {MAX_URL} characters",
                           "url")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise WebhookError(f"url is not a valid URL: {exc}", "url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookError("url must be an absolute http:// or https:// URL with a host", "url")
    return url


def check_events(events: object) -> list[str]:
    """The filter as stored: the event types named once each, or ["*"] for every event
    (what an absent or empty filter means)."""
    if events is None:
        return [ALL]
    if not isinstance(events, list | tuple) or not all(isinstance(e, str) for e in events):
        raise WebhookError("events must be a list of event types", "events")
    unknown = [e for e in events if e not in EVENT_TYPES and e != ALL]
    if unknown:
        raise WebhookError(f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)} "
                           f"(or {ALL!r} for all)", "events")
    if not events or ALL in events:
        return [ALL]
    return list(dict.fromkeys(events))


def matches(events: list[str], event_type: str) -> bool:
    return not events or ALL in events or event_type in events


def iso(ms: int) -> str:
    """Unix ms as ISO 8601 in UTC with a Z, as every time in Outlay's answers."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)  # money travels as exact decimal strings
    raise TypeError(f"cannot put a {type(value).__name__} in a webhook payload")


def payload(event_id: str, event_type: str, created_ms: int, data: Mapping[str, Any]) -> str:
    """The body every endpoint receives for one event, signed as these exact bytes."""
    return json.dumps(
        {"id": event_id, "type": event_type, "created_at": iso(created_ms), "data": dict(data)},
        separators=(",", ":"), ensure_ascii=False, default=_jsonable)
