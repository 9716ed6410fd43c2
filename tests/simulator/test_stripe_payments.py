"""The simulated Stripe keeps a payment's state as Stripe does: updates while nothing is
authorized, confirmation, authorization raised, full and partial capture, cancellation; a
charge captured later in part; and refuses what Stripe refuses, in its shapes."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from outlay.simulator.vendors import SimulatedVendors

from .test_stripe import error_of, stripe_call

CARD = {"payment_method": "pm_card_visa"}


async def intent(sim: SimulatedVendors, **form: str) -> dict[str, Any]:
    status, _, body = await stripe_call(sim, "POST", "/v1/payment_intents",
                                        {"amount": "2000", "currency": "usd", **form})
    assert status == 200, body
    return body


async def post(sim: SimulatedVendors, path: str, form: dict[str, str] | None = None
               ) -> dict[str, Any]:
    status, _, body = await stripe_call(sim, "POST", path, form or {})
    assert status == 200, body
    return body


async def test_an_update_changes_the_amount_until_something_is_authorized() -> None:
    sim = SimulatedVendors()
    created = await intent(sim)
    updated = await post(sim, f"/v1/payment_intents/{created['id']}",
                         {"amount": "5000", "currency": "eur", "metadata[a]": "1"})
    assert (updated["amount"], updated["currency"], updated["metadata"]) == (
        5000, "eur", {"a": "1"})
    confirmed = await post(sim, f"/v1/payment_intents/{created['id']}/confirm", CARD)
    assert (confirmed["status"], confirmed["amount_received"]) == ("succeeded", 5000)
    status, error = await error_of(sim, f"/v1/payment_intents/{created['id']}",
                                   {"amount": "9000"})
    assert (status, error["code"]) == (400, "payment_intent_unexpected_state")
    assert "succeeded" in error["message"]


async def test_a_manual_intent_is_captured_in_part_and_the_rest_released() -> None:
    sim = SimulatedVendors()
    held = await intent(sim, confirm="true", capture_method="manual", **CARD)
    assert (held["status"], held["amount_capturable"]) == ("requires_capture", 2000)
    raised = await post(sim, f"/v1/payment_intents/{held['id']}/increment_authorization",
                        {"amount": "2500"})
    assert (raised["amount"], raised["amount_capturable"]) == (2500, 2500)
    captured = await post(sim, f"/v1/payment_intents/{held['id']}/capture",
                          {"amount_to_capture": "500"})
    assert (captured["status"], captured["amount_received"], captured["amount_capturable"]) == (
        "succeeded", 500, 0)
    _, _, charge = await stripe_call(sim, "GET", f"/v1/charges/{held['latest_charge']}")
    assert (charge["captured"], charge["amount_captured"], charge["amount_refunded"]) == (
        True, 500, 2000)
    stripe.PaymentIntent.construct_from(captured, "sk_test")


@pytest.mark.parametrize(
    ("form", "code"),
    [({"amount_to_capture": "3000"}, "amount_too_large"),
     ({"amount_to_capture": "12.5"}, "parameter_invalid_integer")],
)
async def test_a_capture_beyond_the_authorization_is_refused(
        form: dict[str, str], code: str) -> None:
    sim = SimulatedVendors()
    held = await intent(sim, confirm="true", capture_method="manual", **CARD)
    status, error = await error_of(sim, f"/v1/payment_intents/{held['id']}/capture", form)
    assert (status, error["code"], error["param"]) == (400, code, "amount_to_capture")


async def test_only_an_authorized_intent_is_captured_or_incremented() -> None:
    sim = SimulatedVendors()
    created = await intent(sim)
    for action in ("capture", "increment_authorization"):
        status, error = await error_of(sim, f"/v1/payment_intents/{created['id']}/{action}",
                                       {"amount": "3000"})
        assert (status, error["code"]) == (400, "payment_intent_unexpected_state")


@pytest.mark.parametrize("authorized", [True, False])
async def test_a_cancel_releases_what_was_held(authorized: bool) -> None:
    sim = SimulatedVendors()
    created = await (intent(sim, confirm="true", capture_method="manual", **CARD)
                     if authorized else intent(sim))
    canceled = await post(sim, f"/v1/payment_intents/{created['id']}/cancel",
                          {"cancellation_reason": "abandoned"})
    assert (canceled["status"], canceled["amount_capturable"], canceled["amount_received"],
            canceled["cancellation_reason"]) == ("canceled", 0, 0, "abandoned")
    assert isinstance(canceled["canceled_at"], int)
    if authorized:
        _, _, charge = await stripe_call(sim, "GET", f"/v1/charges/{created['latest_charge']}")
        assert (charge["refunded"], charge["amount_refunded"]) == (True, 2000)
    status, error = await error_of(sim, f"/v1/payment_intents/{created['id']}/cancel", {})
    assert (status, error["code"]) == (400, "payment_intent_unexpected_state")


async def test_a_charge_is_captured_later_in_part_and_once() -> None:
    sim = SimulatedVendors()
    charge = await post(sim, "/v1/charges", {"amount": "4000", "currency": "usd",
                                             "source": "tok_visa", "capture": "false"})
    assert (charge["captured"], charge["amount_captured"]) == (False, 0)
    updated = await post(sim, f"/v1/charges/{charge['id']}", {"description": "order 7"})
    assert updated["description"] == "order 7"
    captured = await post(sim, f"/v1/charges/{charge['id']}/capture", {"amount": "1000"})
    assert (captured["captured"], captured["amount_captured"], captured["amount_refunded"]) == (
        True, 1000, 3000)
    status, error = await error_of(sim, f"/v1/charges/{charge['id']}/capture", {})
    assert (status, error["code"]) == (400, "charge_already_captured")
    status, error = await error_of(sim, f"/v1/charges/{charge['id']}", {"amount": "1"})
    assert (status, error["param"]) == (400, "amount")


async def test_calls_on_an_unknown_payment_are_404() -> None:
    sim = SimulatedVendors()
    for path in ("/v1/payment_intents/pi_nope", "/v1/payment_intents/pi_nope/confirm",
                 "/v1/charges/ch_nope/capture"):
        status, error = await error_of(sim, path, {})
        assert (status, error["code"]) == (404, "resource_missing")
