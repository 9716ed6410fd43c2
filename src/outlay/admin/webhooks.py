"""Admin routes for webhook endpoints and their deliveries (SPEC §5)."""

from __future__ import annotations

from aiohttp import web

from outlay.admin.common import PREFIX, dump, int_query, read_json
from outlay.gateway.context import GATEWAY
from outlay.policy.errors import OutlayError, invalid_request
from outlay.webhooks.delivery import poke
from outlay.webhooks.events import TEST_EVENT, WebhookError, check_events, check_url
from outlay.webhooks.outbox import WebhookStore

MAX_DELIVERIES = 1000
MAX_OVERLAP_S = 7 * 86_400


class _Conflict(OutlayError):
    status = 409
    error_type = "admin_error"


def _store(request: web.Request) -> WebhookStore:
    store = request.app[GATEWAY].store
    if not isinstance(store, WebhookStore):
        error = OutlayError("not_supported", "This state backend keeps no webhook outbox.")
        error.status = 501
        raise error
    return store


def _id(request: web.Request) -> str:
    return request.match_info["id"]


async def add_webhook(request: web.Request) -> web.Response:
    body = await read_json(request, ("url", "events"))
    try:
        url, events = check_url(body.get("url")), check_events(body.get("events"))
    except WebhookError as exc:
        raise invalid_request(str(exc), exc.param) from None
    return dump(await _store(request).add_webhook(url, events), 201)


async def list_webhooks(request: web.Request) -> web.Response:
    return dump({"webhooks": await _store(request).list_webhooks()})


async def show_webhook(request: web.Request) -> web.Response:
    return dump(await _store(request).get_webhook(_id(request)))


async def remove_webhook(request: web.Request) -> web.Response:
    await _store(request).remove_webhook(_id(request))
    return dump({"id": _id(request), "deleted": True})


async def rotate_secret(request: web.Request) -> web.Response:
    body = await read_json(request, ("overlap_seconds",))
    overlap = body.get("overlap_seconds", 86_400)
    if isinstance(overlap, bool) or not isinstance(overlap, int | float) or not (
            0 <= overlap <= MAX_OVERLAP_S):
        raise invalid_request(
            f"overlap_seconds must be a number of seconds from 0 to {MAX_OVERLAP_S} (7 days): "
            "how long the old secret keeps signing beside the new one", "overlap_seconds")
    return dump(await _store(request).rotate_webhook_secret(_id(request), overlap))


async def enable_webhook(request: web.Request) -> web.Response:
    await read_json(request, ())  # takes no fields
    return dump(await _store(request).enable_webhook(_id(request)))


async def send_test(request: web.Request) -> web.Response:
    """Queue a `webhook.test` event for this endpoint only, whatever its filter."""
    await read_json(request, ())  # takes no fields
    store = _store(request)
    endpoint = await store.get_webhook(_id(request))
    if endpoint["disabled_at"] is not None:
        raise _Conflict("conflict", f"Webhook endpoint {endpoint['id']} is disabled "
                        f"({endpoint['disabled_reason']}); enable it first.")
    event_id = await store.emit(TEST_EVENT, {
        "endpoint_id": endpoint["id"], "test": True,
        "message": "A test event sent by `outlay webhooks test`.",
    }, endpoint_id=endpoint["id"])
    poke(request.app)
    return dump({"event_id": event_id, "endpoint_id": endpoint["id"], "type": TEST_EVENT},
                 202)


async def endpoint_deliveries(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 100, MAX_DELIVERIES)
    found = await _store(request).list_deliveries(_id(request), None, limit)
    return dump({"deliveries": found})


async def deliveries(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 100, MAX_DELIVERIES)
    found = await _store(request).list_deliveries(
        request.query.get("endpoint_id"), request.query.get("event_id"), limit)
    return dump({"deliveries": found})


def add_webhook_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/webhooks", add_webhook)
    r.add_get(f"{PREFIX}/webhooks", list_webhooks)
    r.add_get(f"{PREFIX}/webhooks/{{id}}", show_webhook)
    r.add_delete(f"{PREFIX}/webhooks/{{id}}", remove_webhook)
    r.add_post(f"{PREFIX}/webhooks/{{id}}/rotate", rotate_secret)
    r.add_post(f"{PREFIX}/webhooks/{{id}}/enable", enable_webhook)
    r.add_post(f"{PREFIX}/webhooks/{{id}}/test", send_test)
    r.add_get(f"{PREFIX}/webhooks/{{id}}/deliveries", endpoint_deliveries)
    r.add_get(f"{PREFIX}/deliveries", deliveries)
