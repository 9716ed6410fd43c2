"""The simulated Stripe API: objects Stripe's own types accept, its error shapes, idempotency."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe

from outlay.simulator.stripe import decode_form
from outlay.simulator.vendors import SimulatedVendors
from outlay.upstream import UpstreamRequest

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def stripe_call(
    sim: SimulatedVendors,
    method: str,
    path: str,
    form: dict[str, str] | str = "",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = (form if isinstance(form, str) else urlencode(form)).encode()
    request = UpstreamRequest(
        "stripe", method, path, {**FORM, **(headers or {})}, body, False, query
    )
    response = await sim.send(request)
    try:
        raw = await response.read()
    finally:
        await response.close()
    return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(raw)


async def error_of(sim: SimulatedVendors, path: str, form: dict[str, str]) -> tuple[int, Any]:
    status, _, body = await stripe_call(sim, "POST", path, form)
    assert set(body) == {"error"}
    return status, body["error"]


def test_form_brackets_become_objects_and_lists() -> None:
    assert decode_form(
        "amount=5&metadata[a]=1&metadata[b]=&payment_method_types[0]=card"
        "&payment_method_types[1]=link&expand[]=customer&shipping[address][city]=Oslo"
    ) == {
        "amount": "5",
        "metadata": {"a": "1", "b": ""},
        "payment_method_types": ["card", "link"],
        "expand": ["customer"],
        "shipping": {"address": {"city": "Oslo"}},
    }


async def test_payment_intent_is_a_stripe_payment_intent() -> None:
    sim = SimulatedVendors()
    status, headers, body = await stripe_call(
        sim,
        "POST",
        "/v1/payment_intents",
        {"amount": "2000", "currency": "GBP", "metadata[order]": "42", "description": "Mug"},
        {"Stripe-Version": "2024-06-20"},
    )
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert headers["request-id"].startswith("req_")
    assert headers["stripe-version"] == "2024-06-20"
    intent = stripe.PaymentIntent.construct_from(body, "sk_test")
    assert intent.object == "payment_intent"
    assert intent.id.startswith("pi_")
    assert (intent.amount, intent.currency, intent.status) == (
        2000,
        "gbp",
        "requires_payment_method",
    )
    assert intent.metadata.to_dict() == {"order": "42"}
    assert intent.description == "Mug"
    assert intent.livemode is False
    _, _, fetched = await stripe_call(sim, "GET", f"/v1/payment_intents/{intent.id}")
    assert fetched == body


@pytest.mark.parametrize(
    ("form", "status", "amount_received", "amount_capturable"),
    [
        ({"payment_method": "pm_card_visa"}, "requires_confirmation", 0, 0),
        ({"payment_method": "pm_card_visa", "confirm": "true"}, "succeeded", 900, 0),
        (
            {"payment_method": "pm_card_visa", "confirm": "true", "capture_method": "manual"},
            "requires_capture",
            0,
            900,
        ),
    ],
)
async def test_payment_intent_status_follows_confirmation_and_capture(
    form: dict[str, str], status: str, amount_received: int, amount_capturable: int
) -> None:
    _, _, body = await stripe_call(
        SimulatedVendors(),
        "POST",
        "/v1/payment_intents",
        {"amount": "900", "currency": "usd", **form},
    )
    assert body["status"] == status
    assert (body["amount_received"], body["amount_capturable"]) == (
        amount_received,
        amount_capturable,
    )


@pytest.mark.parametrize(
    ("form", "param", "code", "message"),
    [
        ({"currency": "usd"}, "amount", "parameter_missing", "Missing required param: amount."),
        ({"amount": "12.5", "currency": "usd"}, "amount", "parameter_invalid_integer", None),
        ({"amount": "0", "currency": "usd"}, "amount", "parameter_invalid_integer", None),
        ({"amount": "100000000", "currency": "usd"}, "amount", "amount_too_large", None),
        ({"amount": "100"}, "currency", "parameter_missing", None),
        ({"amount": "100", "currency": "dollars"}, "currency", None, None),
        (
            {"amount": "100", "currency": "usd", "customer": "cus_x"},
            "customer",
            "resource_missing",
            None,
        ),
        ({"amount": "100", "currency": "usd", "confirm": "maybe"}, "confirm", None, None),
        ({"amount": "100", "currency": "usd", "metadata": "x"}, "metadata", None, None),
    ],
)
async def test_validation_errors_have_stripes_shape(
    form: dict[str, str], param: str, code: str | None, message: str | None
) -> None:
    status, error = await error_of(SimulatedVendors(), "/v1/payment_intents", form)
    assert status == 400
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error.get("code") == code
    assert isinstance(error["message"], str)
    if message is not None:
        assert error["message"] == message


async def test_confirming_without_a_payment_method_is_refused() -> None:
    status, error = await error_of(
        SimulatedVendors(),
        "/v1/payment_intents",
        {"amount": "1", "currency": "usd", "confirm": "true"},
    )
    assert status == 400
    assert error["code"] == "payment_intent_unexpected_state"


async def test_a_declined_intent_carries_the_intent_and_is_kept() -> None:
    sim = SimulatedVendors()
    status, error = await error_of(
        sim,
        "/v1/payment_intents",
        {
            "amount": "100",
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclined",
            "confirm": "true",
        },
    )
    assert status == 402
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        "generic_decline",
    )
    assert error["charge"].startswith("ch_")
    intent = error["payment_intent"]
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == "card_declined"
    status, _, fetched = await stripe_call(sim, "GET", f"/v1/payment_intents/{intent['id']}")
    assert status == 200
    assert fetched["id"] == intent["id"]


async def test_charge_needs_a_source_or_customer_and_can_wait_for_capture() -> None:
    sim = SimulatedVendors()
    status, error = await error_of(sim, "/v1/charges", {"amount": "100", "currency": "usd"})
    assert (status, error["message"]) == (400, "Must provide source or customer.")
    _, _, body = await stripe_call(
        sim,
        "POST",
        "/v1/charges",
        {"amount": "100", "currency": "usd", "source": "tok_visa", "capture": "false"},
    )
    charge = stripe.Charge.construct_from(body, "sk_test")
    assert (charge.status, charge.captured, charge.amount_captured) == ("succeeded", False, 0)
    _, _, fetched = await stripe_call(sim, "GET", f"/v1/charges/{charge.id}")
    assert fetched == body


async def test_replay_is_byte_identical_and_marked() -> None:
    sim = SimulatedVendors()
    form = {"amount": "100", "currency": "usd"}
    key = {"Idempotency-Key": "abc"}
    first = await stripe_call(sim, "POST", "/v1/payment_intents", form, key)
    replay = await stripe_call(sim, "POST", "/v1/payment_intents", form, key)
    assert replay[2] == first[2]
    assert replay[1]["idempotent-replayed"] == "true"
    assert replay[1]["request-id"] == first[1]["request-id"]
    assert "idempotent-replayed" not in first[1]


async def test_reusing_a_key_for_another_request_is_an_idempotency_error() -> None:
    sim = SimulatedVendors()
    key = {"Idempotency-Key": "abc"}
    await stripe_call(sim, "POST", "/v1/payment_intents", {"amount": "100", "currency": "usd"}, key)
    status, _, body = await stripe_call(sim, "POST", "/v1/customers", {"email": "a@b.co"}, key)
    assert status == 400
    assert body["error"]["type"] == "idempotency_error"
    assert "abc" in body["error"]["message"]


async def test_customer_list_pages_newest_first() -> None:
    sim = SimulatedVendors()
    ids = []
    for email in ("a@x.co", "b@x.co", "c@x.co"):
        _, _, customer = await stripe_call(sim, "POST", "/v1/customers", {"email": email})
        stripe.Customer.construct_from(customer, "sk_test")
        ids.append(customer["id"])
    _, _, page = await stripe_call(sim, "GET", "/v1/customers", query="limit=2")
    assert (page["object"], page["url"], page["has_more"]) == ("list", "/v1/customers", True)
    assert [c["id"] for c in page["data"]] == [ids[2], ids[1]]
    _, _, rest = await stripe_call(
        sim, "GET", "/v1/customers", query=f"limit=2&starting_after={ids[1]}"
    )
    assert ([c["id"] for c in rest["data"]], rest["has_more"]) == ([ids[0]], False)
    _, _, found = await stripe_call(sim, "GET", "/v1/customers", query="email=b%40x.co")
    assert [c["id"] for c in found["data"]] == [ids[1]]
    status, _, body = await stripe_call(sim, "GET", "/v1/customers", query="limit=101")
    assert (status, body["error"]["param"]) == (400, "limit")


async def test_unknown_routes_and_objects_are_404s() -> None:
    sim = SimulatedVendors()
    status, _, body = await stripe_call(sim, "POST", "/v1/invoices", {"customer": "cus_1"})
    assert status == 404
    assert body["error"]["message"].startswith("Unrecognized request URL (POST: /v1/invoices)")
    status, _, body = await stripe_call(sim, "GET", "/v1/customers/cus_nope")
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        404,
        "resource_missing",
        "id",
    )
    status, _, body = await stripe_call(sim, "DELETE", "/v1/payment_intents")
    assert status == 404
