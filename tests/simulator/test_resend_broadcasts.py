"""The simulated Resend audiences and broadcasts: a broadcast is a draft for an audience until
it is sent (or scheduled) once, with Resend's fields and errors."""

from __future__ import annotations

import uuid

import pytest

from outlay.simulator.vendors import SimulatedVendors

from .test_resend import resend_call


async def audience_with(sim: SimulatedVendors, *emails: str) -> str:
    status, audience = await resend_call(sim, "POST", "/audiences", {"name": "Customers"})
    assert (status, audience["object"], audience["name"]) == (200, "audience", "Customers")
    for email in emails:
        status, contact = await resend_call(sim, "POST", f"/audiences/{audience['id']}/contacts",
                                            {"email": email, "first_name": "A"})
        assert (status, contact["object"]) == (200, "contact")
    return str(audience["id"])


async def test_a_broadcast_is_a_draft_until_sent_once() -> None:
    sim = SimulatedVendors()
    audience = await audience_with(sim, "a@example.com", "b@example.com")
    _, contacts = await resend_call(sim, "GET", f"/audiences/{audience}/contacts")
    assert [c["email"] for c in contacts["data"]] == ["b@example.com", "a@example.com"]
    status, created = await resend_call(sim, "POST", "/broadcasts", {
        "audience_id": audience, "from": "shop@example.com", "subject": "Sale", "html": "x"})
    assert status == 200
    uuid.UUID(created["id"])
    _, draft = await resend_call(sim, "GET", f"/broadcasts/{created['id']}")
    assert (draft["object"], draft["status"], draft["sent_at"]) == ("broadcast", "draft", None)
    status, sent = await resend_call(sim, "POST", f"/broadcasts/{created['id']}/send", {})
    assert (status, sent) == (200, {"id": created["id"]})
    _, after = await resend_call(sim, "GET", f"/broadcasts/{created['id']}")
    assert after["status"] == "sent"
    assert after["sent_at"] is not None
    status, error = await resend_call(sim, "POST", f"/broadcasts/{created['id']}/send", {})
    assert (status, error["name"]) == (422, "validation_error")


async def test_a_broadcast_can_be_scheduled() -> None:
    sim = SimulatedVendors()
    audience = await audience_with(sim)
    _, created = await resend_call(sim, "POST", "/broadcasts", {
        "audience_id": audience, "from": "shop@example.com", "subject": "Later"})
    await resend_call(sim, "POST", f"/broadcasts/{created['id']}/send",
                      {"scheduled_at": "in 1 hour"})
    _, queued = await resend_call(sim, "GET", f"/broadcasts/{created['id']}")
    assert (queued["status"], queued["scheduled_at"]) == ("queued", "in 1 hour")


@pytest.mark.parametrize(("path", "payload", "status"), [
    ("/broadcasts", {"audience_id": "nope", "from": "a@b.co", "subject": "s"}, 404),
    ("/broadcasts", {"from": "a@b.co", "subject": "s"}, 422),
    ("/broadcasts/nope/send", {}, 404),
    ("/audiences", {"name": ""}, 422),
    ("/audiences/nope/contacts", {"email": "a@b.co"}, 404),
])
async def test_what_resend_refuses_is_refused(path: str, payload: object, status: int) -> None:
    got, error = await resend_call(SimulatedVendors(), "POST", path, payload)
    assert got == status
    assert set(error) == {"statusCode", "message", "name"}


async def test_a_contact_needs_an_address() -> None:
    sim = SimulatedVendors()
    audience = await audience_with(sim)
    status, error = await resend_call(sim, "POST", f"/audiences/{audience}/contacts",
                                      {"email": "nobody"})
    assert (status, error["name"]) == (422, "validation_error")
