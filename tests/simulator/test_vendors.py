"""SimulatedVendors as a whole: the received log, fault injection, idempotent replays."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from outlay.simulator.vendors import FAULT_HEADER, SIMULATED_VENDORS, SimulatedVendors
from outlay.upstream import UpstreamBroken, UpstreamRequest, UpstreamUnreachable

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def send(
    sim: SimulatedVendors,
    vendor: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    response = await sim.send(UpstreamRequest(vendor, method, path, headers or {}, body, False))
    try:
        raw = await response.read()
    finally:
        await response.close()
    return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(raw)


def test_the_three_vendors_are_simulated() -> None:
    assert frozenset({"stripe", "twilio", "resend"}) == SIMULATED_VENDORS


async def test_received_logs_every_call_that_reached_a_vendor_in_order() -> None:
    sim = SimulatedVendors()
    assert sim.received == []
    await send(sim, "stripe", "post", "/v1/customers", b"email=a%40b.co", FORM)
    await send(sim, "resend", "GET", "/emails/nope")
    await send(sim, "twilio", "GET", "/2010-04-01/Accounts/AC1/Messages.json")
    assert sim.received == [
        ("stripe", "POST", "/v1/customers"),
        ("resend", "GET", "/emails/nope"),
        ("twilio", "GET", "/2010-04-01/Accounts/AC1/Messages.json"),
    ]
    assert [request.body for request in sim.requests] == [b"email=a%40b.co", b"", b""]


async def test_an_unknown_vendor_is_unreachable_and_not_logged() -> None:
    sim = SimulatedVendors()
    with pytest.raises(UpstreamUnreachable):
        await send(sim, "acme", "POST", "/v1/jobs")
    assert sim.received == []


async def test_break_fault_loses_the_connection_after_the_request_reached_the_vendor() -> None:
    sim = SimulatedVendors()
    with pytest.raises(UpstreamBroken):
        await send(sim, "stripe", "POST", "/v1/charges", headers={FAULT_HEADER: "break"})
    assert sim.received == [("stripe", "POST", "/v1/charges")]


@pytest.mark.parametrize(
    ("vendor", "path", "check"),
    [
        ("stripe", "/v1/charges", lambda body: body["error"]["type"] == "api_error"),
        ("twilio", "/2010-04-01/Accounts/AC1/Messages.json", lambda body: body["status"] == 503),
        ("resend", "/emails", lambda body: body["statusCode"] == 503),
    ],
)
async def test_error_fault_answers_in_the_vendors_shape(vendor: str, path: str, check: Any) -> None:
    sim = SimulatedVendors()
    status, _, body = await send(sim, vendor, "POST", path, headers={FAULT_HEADER: "error-503"})
    assert status == 503
    assert check(body)


async def test_an_unknown_fault_is_a_400() -> None:
    status, _, body = await send(
        SimulatedVendors(), "stripe", "POST", "/v1/charges", headers={FAULT_HEADER: "explode"}
    )
    assert status == 400
    assert FAULT_HEADER in body["error"]["message"]


async def test_a_failed_request_is_not_saved_under_its_idempotency_key() -> None:
    sim = SimulatedVendors()
    key = {"Idempotency-Key": "k1", **FORM}
    status, _, _ = await send(sim, "stripe", "POST", "/v1/payment_intents", b"currency=usd", key)
    assert status == 400
    # Fixed and retried with the same key, as Stripe allows after a validation error.
    status, _, body = await send(
        sim, "stripe", "POST", "/v1/payment_intents", b"amount=100&currency=usd", key
    )
    assert (status, body["amount"]) == (200, 100)


async def test_idempotency_keys_are_per_vendor_and_ignored_on_twilio() -> None:
    sim = SimulatedVendors()
    key = {"Idempotency-Key": "same"}
    _, _, intent = await send(
        sim, "stripe", "POST", "/v1/payment_intents", b"amount=1&currency=usd", key
    )
    email = b'{"from": "a@b.co", "to": "c@d.co", "subject": "s", "text": "t"}'
    status, _, sent = await send(sim, "resend", "POST", "/emails", email, key)
    assert status == 200
    assert sent["id"] != intent["id"]
    sms = b"To=%2B15558675310&From=%2B15017122661&Body=hi"
    _, _, first = await send(
        sim, "twilio", "POST", "/2010-04-01/Accounts/AC1/Messages.json", sms, key
    )
    _, _, second = await send(
        sim, "twilio", "POST", "/2010-04-01/Accounts/AC1/Messages.json", sms, key
    )
    assert first["sid"] != second["sid"]


async def test_latency_delays_each_answer() -> None:
    sim = SimulatedVendors(latency_ms=50)
    started = time.monotonic()
    await asyncio.gather(*(send(sim, "resend", "GET", "/emails/x") for _ in range(5)))
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 0.5


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        SimulatedVendors(latency_ms=-1)
