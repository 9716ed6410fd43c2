"""The webhook routes' part of the admin OpenAPI document (merged by `admin/openapi.py`).
Self-contained, so the document can import it without importing the routes."""

from __future__ import annotations

from typing import Any

from outlay.webhooks.events import ALL, EVENT_TYPES, TEST_EVENT
from outlay.webhooks.outbox import DELIVERY_STATES

_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}
_EVENTS = {"type": "array", "items": {"enum": [*EVENT_TYPES, ALL]},
           "description": 'the event types to receive; "*" or [] for all'}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "examples": ["wh_0123456789abcdef"]},
        "url": {"type": "string", "format": "uri"}, "events": _EVENTS,
        "created_at": _TIME, "disabled_at": _MAYBE_TIME,
        "disabled_reason": {"type": ["string", "null"]},
        "previous_secret_expires_at": {
            **_MAYBE_TIME, "description": "while a rotation overlaps: when the old secret "
                                          "stops signing"},
        "pending": {"type": "integer"}, "failed": {"type": "integer"},
    },
}
_SECRET = {"type": "string", "description": "whsec_…, shown only in this answer",
           "examples": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}
_DELIVERY = {
    "type": "object",
    "properties": {
        "event_id": {"type": "string"}, "endpoint_id": {"type": "string"},
        "type": {"type": "string"}, "created_at": _TIME, "state": {"enum": DELIVERY_STATES},
        "attempts": {"type": "integer"}, "next_attempt_at": _MAYBE_TIME,
        "last_status": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "attempt_log": {"type": "array", "items": {"type": "object", "properties": {
            "at": _TIME, "status_code": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"]}, "duration_ms": {"type": "integer"}}}},
    },
}
_DELIVERIES = {"type": "object", "properties": {"deliveries": {"type": "array",
                                                               "items": _DELIVERY}}}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_LIMIT = {"name": "limit", "in": "query",
          "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}


def _ok(schema: dict[str, Any], status: str = "200", text: str = "OK") -> dict[str, Any]:
    return {status: {"description": text,
                     "content": {"application/json": {"schema": schema}}},
            "default": {"description": "error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def webhook_paths() -> dict[str, Any]:
    created = {"allOf": [_ENDPOINT, {"type": "object", "properties": {"secret": _SECRET}}]}
    return {
        "/admin/v1/webhooks": {
            "post": {"summary": "Register a webhook endpoint; its secret is shown only here",
                     "requestBody": _body({"type": "object", "required": ["url"], "properties": {
                         "url": {"type": "string", "format": "uri"}, "events": _EVENTS}}),
                     "responses": _ok(created, "201", "Created")},
            "get": {"summary": "List webhook endpoints", "responses": _ok({
                "type": "object", "properties": {"webhooks": {"type": "array",
                                                              "items": _ENDPOINT}}})},
        },
        "/admin/v1/webhooks/{id}": {
            "get": {"summary": "Show a webhook endpoint", "parameters": _ID,
                    "responses": _ok(_ENDPOINT)},
            "delete": {"summary": "Remove a webhook endpoint and its deliveries",
                       "parameters": _ID, "responses": _ok({"type": "object"})},
        },
        "/admin/v1/webhooks/{id}/rotate": {"post": {
            "summary": "A new secret; the old one keeps signing for overlap_seconds",
            "parameters": _ID,
            "requestBody": _body({"type": "object", "properties": {"overlap_seconds": {
                "type": "number", "minimum": 0, "maximum": 604800, "default": 86400}}}, False),
            "responses": _ok({"type": "object", "properties": {
                "id": {"type": "string"}, "secret": _SECRET,
                "previous_secret_expires_at": _MAYBE_TIME}})}},
        "/admin/v1/webhooks/{id}/enable": {"post": {
            "summary": "Deliver to a disabled endpoint again (410 Gone disables one)",
            "parameters": _ID, "responses": _ok(_ENDPOINT)}},
        "/admin/v1/webhooks/{id}/test": {"post": {
            "summary": f"Send a {TEST_EVENT} event to this endpoint only",
            "parameters": _ID, "responses": _ok({"type": "object", "properties": {
                "event_id": {"type": "string"}, "endpoint_id": {"type": "string"},
                "type": {"const": TEST_EVENT}}}, "202", "Queued")}},
        "/admin/v1/webhooks/{id}/deliveries": {"get": {
            "summary": "An endpoint's deliveries, newest first, with every attempt",
            "parameters": [*_ID, _LIMIT], "responses": _ok(_DELIVERIES)}},
        "/admin/v1/deliveries": {"get": {
            "summary": "Deliveries of one event, or of all, newest first",
            "parameters": [{"name": "event_id", "in": "query", "schema": {"type": "string"}},
                           {"name": "endpoint_id", "in": "query",
                            "schema": {"type": "string"}}, _LIMIT],
            "responses": _ok(_DELIVERIES)}},
    }
