"""Webhook endpoints through the admin API: registering (the secret shown once), listing,
removing, rotating, enabling; a test event delivered to a real receiver and verified with
the reference Standard Webhooks package; deliveries with every attempt; and the OpenAPI
part that documents these routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from standardwebhooks import Webhook

from outlay.admin.webhooks import add_webhook_routes
from outlay.admin.webhooks_openapi import webhook_paths
from outlay.webhooks.delivery import DELIVERER

from .harness import ADMIN_TOKEN, Admin, gateway_app

ENDPOINT_FIELDS = {"id", "url", "events", "created_at", "disabled_at", "disabled_reason",
                   "previous_secret_expires_at", "pending", "failed"}


@dataclass
class Receiver:
    """A customer's receiver on loopback: each delivery verified with the reference
    Standard Webhooks package against `secret`, then answered by `answer` (else 200)."""

    secret: str = ""
    got: list[Any] = field(default_factory=list)
    answer: Callable[[web.Request], Awaitable[web.Response]] | None = None
    url: str = ""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append(Webhook(self.secret).verify(body, dict(request.headers)))
        return await self.answer(request) if self.answer else web.Response()

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := await check()):
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.01)
    return value


def _has_webhook_routes(app: web.Application) -> bool:
    return any(r.resource is not None and r.resource.canonical == "/admin/v1/webhooks"
               for r in app.router.routes())


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient, tmp_path: Path) -> Admin:
    """As tests/admin/conftest.py builds it, with the webhook routes (added here until
    add_admin_routes adds them itself)."""
    app, store, clock = gateway_app(tmp_path / "outlay.db")
    if not _has_webhook_routes(app):
        add_webhook_routes(app)
    client = await aiohttp_client(app)
    await store.init_admin_token(ADMIN_TOKEN)
    return Admin(app, client, store, clock)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def add(admin: Admin, url: str = "https://hooks.example.com/outlay",
              events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    added: dict[str, Any] = await admin.call("POST", "webhooks", body, expect=201)
    return added


async def test_add_answers_201_with_the_secret_once(admin: Admin) -> None:
    added = await add(admin, events=["budget.warning", "key.revoked"])
    assert set(added) == ENDPOINT_FIELDS | {"secret"}
    assert added["id"].startswith("wh_")
    assert added["secret"].startswith("whsec_")
    assert added["events"] == ["budget.warning", "key.revoked"]
    assert added["created_at"] == "2025-06-15T12:00:00Z"
    assert added["disabled_at"] is None
    listed = await admin.call("GET", "webhooks")
    shown = await admin.call("GET", f"webhooks/{added['id']}")
    assert listed == {"webhooks": [shown]}
    assert set(shown) == ENDPOINT_FIELDS
    assert added["secret"] not in repr(listed)


async def test_events_default_to_all(admin: Admin) -> None:
    assert (await add(admin))["events"] == ["*"]
    assert (await add(admin, events=[]))["events"] == ["*"]


@pytest.mark.parametrize(("body", "param"), [
    ({}, "url"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": 7}, "url"),
    ({"url": "https://example.com/x", "events": "budget.warning"}, "events"),
    ({"url": "https://example.com/x", "events": ["budget.warnings"]}, "events"),
])
async def test_add_refuses_bad_input(admin: Admin, body: dict[str, Any], param: str) -> None:
    error = await admin.refused("POST", "webhooks", body)
    assert error["param"] == param


async def test_unknown_endpoints_are_404(admin: Admin) -> None:
    for method, path in (("GET", "webhooks/wh_nope"), ("DELETE", "webhooks/wh_nope"),
                         ("POST", "webhooks/wh_nope/rotate"), ("POST", "webhooks/wh_nope/enable"),
                         ("POST", "webhooks/wh_nope/test"),
                         ("GET", "webhooks/wh_nope/deliveries")):
        await admin.refused(method, path, status=404, code="not_found")


async def test_remove(admin: Admin) -> None:
    added = await add(admin)
    assert await admin.call("DELETE", f"webhooks/{added['id']}") == {
        "id": added["id"], "deleted": True}
    assert await admin.call("GET", "webhooks") == {"webhooks": []}


async def test_rotate(admin: Admin) -> None:
    added = await add(admin)
    rotated = await admin.call("POST", f"webhooks/{added['id']}/rotate",
                               {"overlap_seconds": 3600})
    assert set(rotated) == {"id", "secret", "previous_secret_expires_at"}
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != added["secret"]
    assert rotated["previous_secret_expires_at"] == "2025-06-15T13:00:00Z"
    default = await admin.call("POST", f"webhooks/{added['id']}/rotate")
    assert default["previous_secret_expires_at"] == "2025-06-16T12:00:00Z"
    for bad in (-1, "1h", True, 8 * 86_400):
        error = await admin.refused("POST", f"webhooks/{added['id']}/rotate",
                                    {"overlap_seconds": bad})
        assert error["param"] == "overlap_seconds"


async def test_admin_token_required(admin: Admin) -> None:
    for token in (None, "wrong"):
        data = await admin.call("GET", "webhooks", token=token, expect=401)
        assert data["error"]["code"] == "invalid_admin_token"


async def test_a_test_event_reaches_only_that_endpoint_and_verifies(
    admin: Admin, receiver: Receiver
) -> None:
    other = Receiver()
    await other.start()
    try:
        target = await add(admin, receiver.url, events=["key.revoked"])
        await add(admin, other.url)
        receiver.secret = target["secret"]
        queued = await admin.call("POST", f"webhooks/{target['id']}/test", expect=202)
        assert queued["type"] == "webhook.test"
        assert queued["endpoint_id"] == target["id"]

        async def arrived() -> bool:
            return bool(receiver.got)

        await eventually(arrived)
    finally:
        await other.stop()
    (got,) = receiver.got  # verified, or the receiver would have raised
    assert got["id"] == queued["event_id"]
    assert got["type"] == "webhook.test"
    assert got["data"]["test"] is True
    assert got["created_at"] == "2025-06-15T12:00:00Z"
    assert other.got == []

    async def deliveries() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await admin.call(
            "GET", f"webhooks/{target['id']}/deliveries"))["deliveries"]
        return found if found and found[0]["state"] == "delivered" else []

    (d,) = await eventually(deliveries)
    assert d["event_id"] == queued["event_id"]
    assert d["attempts"] == 1
    assert d["attempt_log"][0]["status_code"] == 200
    by_event = await admin.call("GET", f"deliveries?event_id={queued['event_id']}")
    assert by_event == {"deliveries": [d]}
    assert await admin.call("GET", "deliveries?event_id=evt_nope") == {"deliveries": []}
    await admin.refused("GET", "deliveries?limit=0")


async def test_410_disables_then_enable(admin: Admin, receiver: Receiver) -> None:
    async def gone(_: web.Request) -> web.Response:
        return web.Response(status=410)

    receiver.answer = gone
    added = await add(admin, receiver.url)
    receiver.secret = added["secret"]
    await admin.call("POST", f"webhooks/{added['id']}/test", expect=202)

    async def disabled() -> dict[str, Any] | None:
        shown: dict[str, Any] = await admin.call("GET", f"webhooks/{added['id']}")
        return shown if shown["disabled_at"] else None

    shown = await eventually(disabled)
    assert "410" in shown["disabled_reason"]
    await admin.refused("POST", f"webhooks/{added['id']}/test", status=409, code="conflict")
    enabled = await admin.call("POST", f"webhooks/{added['id']}/enable")
    assert enabled["disabled_at"] is None
    receiver.answer = None
    await admin.call("POST", f"webhooks/{added['id']}/test", expect=202)

    async def second() -> bool:
        return len(receiver.got) == 2

    await eventually(second)


async def test_the_gateway_runs_a_deliverer(admin: Admin) -> None:
    assert admin.app[DELIVERER].running


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"}


def test_the_openapi_part_documents_exactly_these_routes() -> None:
    app = web.Application()
    add_webhook_routes(app)
    documented = {(method, path) for path, item in webhook_paths().items()
                  for method in item}
    assert documented == _routes(app)
    for item in webhook_paths().values():
        for op in item.values():
            assert op["summary"]
            assert op["responses"]
