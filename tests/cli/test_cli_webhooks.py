"""`outlay webhooks …` against a fake admin API: the calls each command makes and what it
prints; the secret appears once, in `add` and `rotate` only."""

from __future__ import annotations

import json

from .fakes import FakeAdmin, RunCli

ENDPOINT = {
    "id": "wh_01", "url": "https://hooks.example.com/outlay",
    "events": ["budget.warning", "key.revoked"], "created_at": "2025-06-15T12:00:00Z",
    "disabled_at": None, "disabled_reason": None, "previous_secret_expires_at": None,
    "pending": 2, "failed": 1,
}
DISABLED = {**ENDPOINT, "id": "wh_02", "events": ["*"], "disabled_at": "2025-06-15T13:00:00Z",
            "disabled_reason": "the receiver answered 410 Gone for evt_9"}
SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
DELIVERY = {
    "event_id": "evt_01", "endpoint_id": "wh_01", "type": "budget.warning",
    "created_at": "2025-06-15T12:00:00Z", "state": "pending", "attempts": 2,
    "next_attempt_at": "2025-06-15T12:00:20Z", "last_status": 503,
    "last_error": "HTTP 503 Service Unavailable",
    "attempt_log": [
        {"at": "2025-06-15T12:00:00Z", "status_code": None, "error": "refused",
         "duration_ms": 1},
        {"at": "2025-06-15T12:00:05Z", "status_code": 503, "error": "HTTP 503",
         "duration_ms": 9}],
}


async def test_add_sends_url_and_events_and_shows_the_secret_once(
    fake_admin: FakeAdmin, run_cli: RunCli
) -> None:
    fake_admin.answer("POST", "/admin/v1/webhooks", {**ENDPOINT, "secret": SECRET}, 201)
    result = await run_cli("webhooks", "add", "https://hooks.example.com/outlay",
                           "--event", "budget.warning", "--event", "key.revoked")
    assert result.exit_code == 0, result.output
    call = fake_admin.last
    assert (call.method, call.path) == ("POST", "/admin/v1/webhooks")
    assert call.body == {"url": "https://hooks.example.com/outlay",
                         "events": ["budget.warning", "key.revoked"]}
    assert result.stdout.count(SECRET) == 1
    assert "shown only now" in result.stdout
    assert "wh_01" in result.stdout
    assert "2025-06-15 12:00:00Z" in result.stdout


async def test_add_without_events_means_all(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/webhooks", {**ENDPOINT, "secret": SECRET}, 201)
    result = await run_cli("webhooks", "add", "https://hooks.example.com/outlay", "--json")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"url": "https://hooks.example.com/outlay"}
    assert json.loads(result.stdout)["secret"] == SECRET


async def test_add_refuses_an_unknown_event_before_sending(
    fake_admin: FakeAdmin, run_cli: RunCli
) -> None:
    result = await run_cli("webhooks", "add", "https://x.example/h", "--event", "budget.warn")
    assert result.exit_code == 2
    assert "budget.warn" in result.stderr
    assert fake_admin.calls == []


async def test_add_shows_the_gateways_refusal(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/webhooks", {"error": {
        "message": "url must be an absolute http:// or https:// URL with a host",
        "code": "invalid_request", "param": "url"}}, 400)
    result = await run_cli("webhooks", "add", "nope")
    assert result.exit_code == 1
    assert "url must be an absolute" in result.stderr
    assert "HTTP 400 invalid_request" in result.stderr


async def test_list_table(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/webhooks", {"webhooks": [ENDPOINT, DISABLED]})
    result = await run_cli("webhooks", "list")
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "URL", "EVENTS", "STATUS", "PENDING", "FAILED", "CREATED"]
    assert first.split()[:6] == ["wh_01", "https://hooks.example.com/outlay",
                                 "budget.warning,key.revoked", "active", "2", "1"]
    assert second.split()[:4] == ["wh_02", "https://hooks.example.com/outlay", "*",
                                  "disabled"]
    assert "whsec_" not in result.stdout


async def test_list_empty(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/webhooks", {"webhooks": []})
    result = await run_cli("webhooks", "list")
    assert result.stdout.strip() == "(no webhook endpoints)"


async def test_show_a_disabled_endpoint(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/webhooks/wh_02", DISABLED)
    result = await run_cli("webhooks", "show", "wh_02")
    assert result.exit_code == 0, result.output
    assert "disabled" in result.stdout
    assert "410 Gone" in result.stdout


async def test_remove(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("DELETE", "/admin/v1/webhooks/wh_01", {"id": "wh_01", "deleted": True})
    result = await run_cli("webhooks", "remove", "wh_01")
    assert result.exit_code == 0, result.output
    assert (fake_admin.last.method, fake_admin.last.path) == ("DELETE",
                                                              "/admin/v1/webhooks/wh_01")
    assert "Removed webhook endpoint wh_01" in result.stdout


async def test_remove_unknown(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    result = await run_cli("webhooks", "remove", "wh_nope")
    assert result.exit_code == 1
    assert "HTTP 404" in result.stderr


async def test_rotate_with_and_without_overlap(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/webhooks/wh_01/rotate", {
        "id": "wh_01", "secret": SECRET, "previous_secret_expires_at": "2025-06-15T14:00:00Z"})
    result = await run_cli("webhooks", "rotate", "wh_01", "--overlap", "2h")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"overlap_seconds": 7200}
    assert result.stdout.count(SECRET) == 1
    assert "also signs until 2025-06-15 14:00:00Z" in result.stdout
    result = await run_cli("webhooks", "rotate", "wh_01")
    assert fake_admin.last.body == {}
    fake_admin.answer("POST", "/admin/v1/webhooks/wh_01/rotate", {
        "id": "wh_01", "secret": SECRET, "previous_secret_expires_at": None})
    result = await run_cli("webhooks", "rotate", "wh_01", "--overlap", "0")
    assert fake_admin.last.body == {"overlap_seconds": 0}
    assert "no longer signs" in result.stdout
    result = await run_cli("webhooks", "rotate", "wh_01", "--overlap", "soon")
    assert result.exit_code == 2


async def test_enable(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/webhooks/wh_02/enable", {**DISABLED,
                                                                   "disabled_at": None})
    result = await run_cli("webhooks", "enable", "wh_02")
    assert result.exit_code == 0, result.output
    assert "wh_02 is enabled" in result.stdout


async def test_test(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/webhooks/wh_01/test", {
        "event_id": "evt_77", "endpoint_id": "wh_01", "type": "webhook.test"}, 202)
    result = await run_cli("webhooks", "test", "wh_01")
    assert result.exit_code == 0, result.output
    assert (fake_admin.last.method, fake_admin.last.path) == ("POST",
                                                              "/admin/v1/webhooks/wh_01/test")
    assert "evt_77" in result.stdout
    assert "outlay webhooks deliveries wh_01" in result.stdout


async def test_deliveries_of_an_endpoint(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/webhooks/wh_01/deliveries", {"deliveries": [DELIVERY]})
    result = await run_cli("webhooks", "deliveries", "wh_01", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"limit": "5"}
    header, row = result.stdout.splitlines()
    assert header.split()[:5] == ["EVENT", "TYPE", "ENDPOINT", "STATE", "ATTEMPTS"]
    assert row.split()[:6] == ["evt_01", "budget.warning", "wh_01", "pending", "2", "503"]
    assert "2025-06-15 12:00:05Z" in row  # the last attempt
    assert "2025-06-15 12:00:20Z" in row  # the next


async def test_deliveries_of_an_event_or_all(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/deliveries", {"deliveries": [DELIVERY]})
    result = await run_cli("webhooks", "deliveries", "--event", "evt_01", "--json")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"event_id": "evt_01"}
    assert json.loads(result.stdout) == {"deliveries": [DELIVERY]}
    await run_cli("webhooks", "deliveries", "wh_01", "--event", "evt_01")
    assert fake_admin.last.query == {"event_id": "evt_01", "endpoint_id": "wh_01"}
    fake_admin.answer("GET", "/admin/v1/deliveries", {"deliveries": []})
    result = await run_cli("webhooks", "deliveries")
    assert fake_admin.last.query == {}
    assert result.stdout.strip() == "(no deliveries)"
