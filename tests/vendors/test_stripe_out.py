"""Stripe refunds, transfers and payouts: priced by their amount as money moved out."""

from __future__ import annotations

import json

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall
from outlay.vendors.stripe import StripePricing

FORM = "application/x-www-form-urlencoded"


def stripe() -> StripePricing:
    return StripePricing.from_config({"fx": {"eur": "1.10"}})


def post(path: str, body: str, **headers: str) -> VendorCall:
    return VendorCall("stripe", "POST", path, FORM, body.encode(),
                      {k.lower().replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(("path", "body", "micros"), [
    ("/v1/transfers", "amount=1000&currency=usd&destination=acct_1", 10_000_000),
    ("/v1/payouts", "amount=1&currency=usd", 10_000),
    ("/v1/transfers/", "amount=1000&currency=usd&destination=acct_1", 10_000_000),
])
def test_money_out_is_reserved_at_its_amount_as_flow_out(path: str, body: str,
                                                          micros: int) -> None:
    pricing = stripe()
    request = post(path, body, idempotency_key="k1")
    assert pricing.object_call(request) is None
    estimate = pricing.estimate(request)
    assert (estimate.cost_micros, estimate.flow) == (micros, "out")
    assert estimate.idempotency_key == "k1"
    assert estimate.body == request.body


@pytest.mark.parametrize("body", [
    "charge=ch_1&amount=500", "charge=ch_1&amount=500&currency=usd",
    "payment_intent=pi_1&amount=500&currency=jpy", "charge=ch_1&amount=500&currency=eur"])
def test_a_refund_unread_is_bounded_by_the_dearest_currency_whatever_it_names(
        body: str) -> None:
    """Stripe refunds in the charge's currency: a refund naming a cheap one (`jpy`) must not
    be reserved at its rate, or it could move more than was counted."""
    pricing = stripe()
    estimate = pricing.estimate(post("/v1/refunds", body))
    assert estimate.flow == "out"
    assert estimate.cost_micros == pricing.usd(500, None) > pricing.usd(500, "usd")


def test_a_refund_without_amount_is_unpriced_money_out() -> None:
    estimate = stripe().estimate(post("/v1/refunds", "charge=ch_1"))
    assert (estimate.cost_micros, estimate.flow) == (None, "out")


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/transfers", "currency=usd&destination=acct_1", "amount"),
    ("/v1/payouts", "currency=usd", "amount"),
    ("/v1/payouts", "amount=100", "currency"),
    ("/v1/transfers", "amount=100&currency=xyz", "currency"),
    ("/v1/refunds", "charge=ch_1&amount=-5&currency=usd", "amount"),
    ("/v1/refunds", "charge=ch_1&amount=five", "amount"),
    ("/v1/refunds", "charge=ch_1&amount=5&currency=us", "currency"),
])
def test_bad_money_out_is_refused_naming_the_field(path: str, body: str, param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        stripe().estimate(post(path, body))
    assert caught.value.details.get("param") == param


@pytest.mark.parametrize(("path", "answer", "micros"), [
    ("/v1/refunds", {"object": "refund", "amount": 300, "currency": "usd"}, 3_000_000),
    ("/v1/charges/ch_1/refunds", {"object": "refund", "amount": 300, "currency": "usd"},
     3_000_000),
    # the older route answers with the charge: the amount named, at most what it refunded
    ("/v1/charges/ch_1/refund", {"object": "charge", "amount_refunded": 900,
                                 "currency": "eur"}, 5_500_000),
    ("/v1/charges/ch_1/refund", {"object": "charge", "amount_refunded": 200,
                                 "currency": "usd"}, 2_000_000),
    ("/v1/transfers", {"object": "transfer", "amount": 100, "currency": "eur"}, 1_100_000),
    ("/v1/payouts", {"object": "payout", "amount": 7, "currency": "usd"}, 70_000),
])
def test_money_out_settles_at_what_stripe_says_moved(path: str, answer: dict[str, object],
                                                     micros: int) -> None:
    pricing = stripe()
    request = post(path, "amount=500&currency=usd")
    estimate = pricing.estimate(request)
    assert pricing.actual(request, 200, json.dumps(answer).encode(), estimate) == micros


@pytest.mark.parametrize(("status", "answer"), [
    (200, b"not json"),
    (200, b'{"object": "charge", "amount": 5, "currency": "usd"}'),
    (200, b'{"object": "payout", "amount": 5, "currency": "usd"}'),
    (200, b'{"object": "refund", "amount": "5", "currency": "usd"}'),
    (200, b'{"object": "refund", "amount": -5, "currency": "usd"}'),
    (200, b'{"object": "refund", "amount": 5}'),
    (200, b"[]"),
    (500, b'{"object": "refund", "amount": 5, "currency": "usd"}'),
])
def test_an_answer_that_is_not_the_object_settles_at_the_reservation(
        status: int, answer: bytes) -> None:
    pricing = stripe()
    request = post("/v1/refunds", "charge=ch_1&amount=500&currency=usd")
    assert pricing.actual(request, status, answer, pricing.estimate(request)) is None


@pytest.mark.parametrize("path", ["/v1/charges/ch_1/refund", "/v1/charges/ch_1/refunds",
                                  "/v1/charges/ch_1/refunds/"])
def test_a_refund_by_a_charges_route_is_money_out_too(path: str) -> None:
    pricing = stripe()
    request = post(path, "amount=500&currency=usd")
    assert pricing.object_call(request) is None
    estimate = pricing.estimate(request)
    assert (estimate.cost_micros, estimate.flow) == (pricing.usd(500, None), "out")


def test_a_refund_by_the_older_route_without_amount_settles_at_what_the_charge_refunded(
        ) -> None:
    pricing = stripe()
    request = post("/v1/charges/ch_1/refund", "")
    estimate = pricing.estimate(request)
    answer = json.dumps({"object": "charge", "amount_refunded": 1000,
                         "currency": "usd"}).encode()
    assert pricing.actual(request, 200, answer, estimate) == 10_000_000  # unread: all of it
    read = pricing.refund_priced(request, estimate, json.dumps({
        "object": "charge", "captured": True, "amount": 1000, "amount_captured": 1000,
        "amount_refunded": 300, "currency": "usd"}).encode())
    assert (read.cost_micros, read.refunded_before) == (7_000_000, 300)
    assert pricing.actual(request, 200, answer, read) == 7_000_000


ACCT = (("Stripe-Account", "acct_1"),)
EXPAND = "expand%5B%5D=latest_charge"


@pytest.mark.parametrize(("path", "body", "account", "read"), [
    ("/v1/refunds", "charge=ch_9", "", ("/v1/charges/ch_9", "", ())),
    ("/v1/refunds", "payment_intent=pi_9", "acct_1", ("/v1/payment_intents/pi_9", EXPAND, ACCT)),
    ("/v1/charges/ch_7/refunds", "", "", ("/v1/charges/ch_7", "", ())),
    ("/v1/refunds", "charge=ch_9&amount=5", "", ("/v1/charges/ch_9", "", ())),
    ("/v1/refunds", "charge=..%2Fcustomers", "", None),  # not an object id
    # two objects named: read as one, it could be refunded as the other
    ("/v1/refunds", "charge=ch_9&payment_intent=pi_9&amount=5", "", None),
    ("/v1/charges/ch_7/refunds", "charge=ch_8", "", None),
    ("/v1/charges/ch_7/refund", "payment_intent=pi_8", "", None),
    ("/v1/refunds", "", "", None),
    ("/v1/transfers", "currency=usd", "", None),
])
def test_a_refund_reads_what_it_refunds(path: str, body: str, account: str,
                                        read: tuple[str, str, object] | None) -> None:
    headers = {"stripe_account": account} if account else {}
    found = stripe().refund_read(post(path, body, **headers))
    assert (found if found is None else (found.path, found.query, found.headers)) == read


def test_the_read_acts_on_the_calls_connected_account_by_either_header() -> None:
    found = stripe().refund_read(post("/v1/refunds", "charge=ch_1", stripe_context="acct_9"))
    assert found is not None
    assert found.headers == (("Stripe-Context", "acct_9"),)


CHARGE = {"object": "charge", "captured": True, "amount": 900, "amount_captured": 800,
          "amount_refunded": 300, "currency": "usd"}


@pytest.mark.parametrize(("answer", "micros"), [
    (CHARGE, 5_000_000),
    ({"object": "charge", "captured": False, "amount": 900, "amount_refunded": 0,
      "currency": "eur"}, 9_900_000),
    ({**CHARGE, "amount_captured": 100}, 0),
    ({"object": "payment_intent", "amount": 900, "amount_received": 700, "currency": "usd"},
     7_000_000),
    # a payment intent whose latest charge Stripe expands: less what that refunded
    ({"object": "payment_intent", "amount": 900, "amount_received": 700, "currency": "usd",
      "latest_charge": {**CHARGE, "amount_refunded": 250}}, 4_500_000),
    ({"object": "payment_intent", "amount": 900, "amount_received": 700, "currency": "usd",
      "latest_charge": "ch_1"}, 7_000_000),
])
def test_a_refund_without_amount_reserves_what_stripe_says_can_still_be_refunded(
        answer: dict[str, object], micros: int) -> None:
    pricing = stripe()
    request = post("/v1/refunds", "charge=ch_1")
    priced = pricing.refund_priced(request, pricing.estimate(request),
                                   json.dumps(answer).encode())
    assert (priced.cost_micros, priced.flow) == (micros, "out")


def test_a_refund_naming_a_cheap_currency_is_priced_in_its_charges() -> None:
    pricing = stripe()
    request = post("/v1/refunds", "charge=ch_1&amount=100000&currency=jpy")
    priced = pricing.refund_priced(request, pricing.estimate(request),
                                   json.dumps(CHARGE).encode())
    assert priced.cost_micros == 1_000_000_000  # $1,000: what Stripe moves, in USD
    assert pricing.actual(request, 200, json.dumps({
        "object": "refund", "amount": 100000, "currency": "usd"}).encode(), priced) == (
        1_000_000_000)


@pytest.mark.parametrize("answer", [
    b"nope", b"[]", b'{"object": "charge", "amount": 5}',
    b'{"object": "charge", "captured": true, "amount_captured": -1, "currency": "usd"}',
    b'{"object": "refund", "amount": 5, "currency": "usd"}',
])
def test_an_answer_saying_nothing_of_the_charge_leaves_the_estimate(answer: bytes) -> None:
    pricing = stripe()
    for body in ("charge=ch_1", "charge=ch_1&amount=5&currency=usd"):
        request = post("/v1/refunds", body)
        estimate = pricing.estimate(request)
        assert pricing.refund_priced(request, estimate, answer) == estimate
