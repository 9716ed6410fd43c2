"""The simulated Resend API: sends, batches (strict and permissive), fetches and errors."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from outlay.simulator.vendors import SimulatedVendors
from outlay.upstream import UpstreamRequest

EMAIL = {"from": "Shop <shop@example.com>", "to": "ada@example.com", "subject": "Hi", "html": "x"}


async def resend_call(
    sim: SimulatedVendors,
    method: str,
    path: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = UpstreamRequest("resend", method, path, headers or {}, body, False)
    response = await sim.send(request)
    try:
        raw = await response.read()
    finally:
        await response.close()
    assert response.headers["Content-Type"].startswith("application/json")
    return response.status, json.loads(raw)


async def test_send_answers_an_id_and_the_email_can_be_fetched() -> None:
    sim = SimulatedVendors()
    status, sent = await resend_call(sim, "POST", "/emails", {**EMAIL, "cc": ["b@example.com"]})
    assert status == 200
    assert set(sent) == {"id"}
    uuid.UUID(sent["id"])
    status, email = await resend_call(sim, "GET", f"/emails/{sent['id']}")
    assert status == 200
    assert email["object"] == "email"
    assert (email["id"], email["from"], email["subject"]) == (sent["id"], EMAIL["from"], "Hi")
    assert (email["to"], email["cc"], email["bcc"]) == (
        ["ada@example.com"],
        ["b@example.com"],
        None,
    )
    assert email["last_event"] == "delivered"


@pytest.mark.parametrize(
    ("payload", "status", "name"),
    [
        ({**EMAIL, "from": None}, 422, "missing_required_field"),
        ({k: v for k, v in EMAIL.items() if k != "to"}, 422, "missing_required_field"),
        ({k: v for k, v in EMAIL.items() if k != "subject"}, 422, "missing_required_field"),
        ({k: v for k, v in EMAIL.items() if k != "html"}, 422, "missing_required_field"),
        ({**EMAIL, "from": "shop"}, 422, "invalid_from_address"),
        ({**EMAIL, "to": ["ok@example.com", "nope"]}, 422, "validation_error"),
        ({**EMAIL, "to": [f"u{i}@example.com" for i in range(51)]}, 422, "validation_error"),
        (b"{not json", 400, "validation_error"),
        ([EMAIL], 422, "validation_error"),
    ],
)
async def test_refusals_have_resends_error_shape(payload: Any, status: int, name: str) -> None:
    answer_status, body = await resend_call(SimulatedVendors(), "POST", "/emails", payload)
    assert answer_status == status
    assert set(body) == {"statusCode", "message", "name"}
    assert (body["statusCode"], body["name"]) == (status, name)


async def test_a_strict_batch_refuses_whole_and_a_permissive_one_sends_the_good_ones() -> None:
    sim = SimulatedVendors()
    batch = [EMAIL, {**EMAIL, "to": "nope"}, {**EMAIL, "to": "bob@example.com"}]
    status, body = await resend_call(sim, "POST", "/emails/batch", batch)
    assert (status, body["name"]) == (422, "validation_error")
    status, body = await resend_call(
        sim, "POST", "/emails/batch", batch, {"x-batch-validation": "permissive"}
    )
    assert status == 200
    assert len(body["data"]) == 2
    assert [error["index"] for error in body["errors"]] == [1]
    status, body = await resend_call(sim, "POST", "/emails/batch", [EMAIL] * 100)
    assert (status, len(body["data"])) == (200, 100)


@pytest.mark.parametrize("payload", [[], [EMAIL] * 101, EMAIL])
async def test_a_batch_must_be_a_list_of_one_to_a_hundred(payload: Any) -> None:
    status, body = await resend_call(SimulatedVendors(), "POST", "/emails/batch", payload)
    assert (status, body["name"]) == (422, "validation_error")


async def test_idempotency_key_replays_and_refuses_another_payload() -> None:
    sim = SimulatedVendors()
    key = {"Idempotency-Key": "welcome/ada"}
    _, first = await resend_call(sim, "POST", "/emails", EMAIL, key)
    _, again = await resend_call(sim, "POST", "/emails", EMAIL, key)
    assert again == first
    status, body = await resend_call(sim, "POST", "/emails", {**EMAIL, "subject": "Other"}, key)
    assert (status, body["name"]) == (409, "invalid_idempotent_request")


async def test_unknown_emails_routes_and_methods() -> None:
    sim = SimulatedVendors()
    status, body = await resend_call(sim, "GET", f"/emails/{uuid.uuid4()}")
    assert (status, body["name"]) == (404, "not_found")
    status, body = await resend_call(sim, "GET", "/domains/x")
    assert (status, body["name"]) == (404, "not_found")
    status, body = await resend_call(sim, "GET", "/emails/batch")
    assert (status, body["name"]) == (405, "method_not_allowed")
