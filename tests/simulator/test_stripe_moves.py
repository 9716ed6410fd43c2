"""The simulated Stripe's money out: refunds, transfers and payouts as Stripe's SDK reads them."""

from __future__ import annotations

import stripe

from outlay.simulator.vendors import SimulatedVendors

from .test_stripe import error_of, stripe_call


async def test_refunds_transfers_and_payouts_are_made_with_their_amount() -> None:
    sim = SimulatedVendors()
    status, _, refund = await stripe_call(sim, "POST", "/v1/refunds",
                                          {"charge": "ch_1", "amount": "500"})
    assert status == 200
    assert (refund["object"], refund["amount"], refund["currency"]) == ("refund", 500, "usd")
    assert stripe.Refund.construct_from(refund, "sk_test").amount == 500
    status, _, transfer = await stripe_call(sim, "POST", "/v1/transfers", {
        "amount": "700", "currency": "eur", "destination": "acct_1"})
    assert (status, transfer["object"], transfer["amount"], transfer["currency"]) == (
        200, "transfer", 700, "eur")
    status, _, payout = await stripe_call(sim, "POST", "/v1/payouts/",
                                          {"amount": "9", "currency": "usd"})
    assert (status, payout["object"], payout["amount"]) == (200, "payout", 9)
    assert len({refund["id"], transfer["id"], payout["id"]}) == 3


async def test_a_refund_without_amount_refunds_the_charges_remainder() -> None:
    sim = SimulatedVendors()
    _, _, charge = await stripe_call(sim, "POST", "/v1/charges", {
        "amount": "1200", "currency": "gbp", "source": "tok_visa"})
    status, _, part = await stripe_call(sim, "POST", "/v1/refunds",
                                        {"charge": charge["id"], "amount": "200"})
    assert (status, part["amount"]) == (200, 200)
    _, _, refund = await stripe_call(sim, "POST", "/v1/refunds", {"charge": charge["id"]})
    assert (refund["amount"], refund["currency"]) == (1000, "gbp")
    _, _, seen = await stripe_call(sim, "GET", f"/v1/charges/{charge['id']}")
    assert (seen["amount_refunded"], seen["refunded"]) == (1200, True)
    status, error = await error_of(sim, "/v1/refunds", {"charge": charge["id"]})
    assert (status, error["code"]) == (400, "charge_already_refunded")
    status, error = await error_of(sim, "/v1/refunds", {"charge": "ch_nobody"})
    assert (status, error["code"]) == (400, "resource_missing")


async def test_a_refund_moves_the_charges_currency_whatever_it_names() -> None:
    sim = SimulatedVendors()
    _, _, charge = await stripe_call(sim, "POST", "/v1/charges", {
        "amount": "5000", "currency": "usd", "source": "tok_visa"})
    _, _, refund = await stripe_call(sim, "POST", "/v1/refunds", {
        "charge": charge["id"], "amount": "4000", "currency": "jpy"})
    assert (refund["amount"], refund["currency"]) == (4000, "usd")


async def test_a_payment_intent_is_refunded_through_its_latest_charge() -> None:
    sim = SimulatedVendors()
    _, _, intent = await stripe_call(sim, "POST", "/v1/payment_intents", {
        "amount": "900", "currency": "eur", "payment_method": "pm_card_visa",
        "confirm": "true"})
    _, _, part = await stripe_call(sim, "POST", "/v1/refunds", {
        "payment_intent": intent["id"], "amount": "300"})
    assert (part["amount"], part["currency"], part["charge"]) == (
        300, "eur", intent["latest_charge"])
    _, _, read = await stripe_call(sim, "GET", f"/v1/payment_intents/{intent['id']}",
                                   query="expand%5B%5D=latest_charge")
    assert read["latest_charge"]["amount_refunded"] == 300
    _, _, plain = await stripe_call(sim, "GET", f"/v1/payment_intents/{intent['id']}")
    assert plain["latest_charge"] == intent["latest_charge"]
    _, _, rest = await stripe_call(sim, "POST", "/v1/refunds", {"payment_intent": intent["id"]})
    assert rest["amount"] == 600


async def test_a_charges_older_refund_routes_refund_it() -> None:
    sim = SimulatedVendors()
    _, _, charge = await stripe_call(sim, "POST", "/v1/charges", {
        "amount": "1000", "currency": "usd", "source": "tok_visa"})
    status, _, refund = await stripe_call(sim, "POST", f"/v1/charges/{charge['id']}/refunds",
                                          {"amount": "400"})
    assert (status, refund["object"], refund["amount"]) == (200, "refund", 400)
    status, _, refunded = await stripe_call(sim, "POST", f"/v1/charges/{charge['id']}/refund")
    assert (status, refunded["object"], refunded["amount_refunded"], refunded["refunded"]) == (
        200, "charge", 1000, True)


async def test_bad_money_out_is_refused_as_stripe_refuses_it() -> None:
    sim = SimulatedVendors()
    for path, form, param in (
            ("/v1/refunds", {"amount": "5"}, None),
            ("/v1/refunds", {"charge": "ch_1", "amount": "0"}, "amount"),
            ("/v1/transfers", {"amount": "5", "currency": "usd"}, "destination"),
            ("/v1/payouts", {"currency": "usd"}, "amount"),
            ("/v1/payouts", {"amount": "5"}, "currency")):
        status, error = await error_of(sim, path, form)
        assert status == 400, (path, form)
        assert error.get("param") == param, (path, form, error)
