"""Stripe: payment amounts in each currency's smallest unit, converted to exact micro-USD."""

from __future__ import annotations

import json

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, VendorEstimate, VendorPricing, pricing_for

FORM = "application/x-www-form-urlencoded"
ZERO_DECIMAL = ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx",
                "vnd", "vuv", "xaf", "xof", "xpf"]  # fmt: skip
THREE_DECIMAL = ["bhd", "jod", "kwd", "omr", "tnd"]


def stripe(**config: object) -> VendorPricing:
    return pricing_for("stripe", config)


def call(
    body: str | bytes = b"",
    path: str = "/v1/payment_intents",
    method: str = "POST",
    content_type: str = FORM,
    headers: dict[str, str] | None = None,
) -> VendorCall:
    raw = body.encode() if isinstance(body, str) else body
    return VendorCall("stripe", method, path, content_type, raw, headers or {})


def refused(pricing: VendorPricing, request: VendorCall) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        pricing.estimate(request)
    assert caught.value.code == "invalid_request"
    assert caught.value.status == 400
    return caught.value


def test_usd_payment_intent_is_exact() -> None:
    estimate = stripe().estimate(call("amount=2000&currency=usd&payment_method_types[]=card"))
    assert estimate == VendorEstimate(
        cost_micros=20_000_000,
        body=b"amount=2000&currency=usd&payment_method_types[]=card",
        idempotency_key=None,
        describe="payment_intent 2000 usd",
    )


def test_charge_create_is_priced() -> None:
    estimate = stripe().estimate(call("amount=999&currency=usd", path="/v1/charges"))
    assert (estimate.cost_micros, estimate.describe) == (9_990_000, "charge 999 usd")


def test_zero_decimal_jpy_is_whole_yen_times_rate() -> None:
    estimate = stripe(fx={"jpy": 0.0067}).estimate(call("amount=2000&currency=jpy"))
    assert estimate.cost_micros == 13_400_000  # 2000 yen x 0.0067
    assert estimate.describe == "payment_intent 2000 jpy"


@pytest.mark.parametrize("currency", ZERO_DECIMAL)
def test_every_stripe_zero_decimal_currency(currency: str) -> None:
    estimate = stripe(fx={currency: 1}).estimate(call(f"amount=7&currency={currency}"))
    assert estimate.cost_micros == 7_000_000


def test_kwd_is_three_decimal() -> None:
    # 1.500 KWD at 3.25 USD per dinar
    estimate = stripe(fx={"kwd": "3.25"}).estimate(call("amount=1500&currency=kwd"))
    assert estimate.cost_micros == 4_875_000


@pytest.mark.parametrize("currency", THREE_DECIMAL)
def test_every_stripe_three_decimal_currency(currency: str) -> None:
    estimate = stripe(fx={currency: 2}).estimate(call(f"amount=1000&currency={currency}"))
    assert estimate.cost_micros == 2_000_000


@pytest.mark.parametrize("currency", ["isk", "huf", "twd"])
def test_stripe_special_cases_stay_two_decimal(currency: str) -> None:
    estimate = stripe(fx={currency: 1}).estimate(call(f"amount=500&currency={currency}"))
    assert estimate.cost_micros == 5_000_000


def test_shipped_table_prices_the_main_currencies() -> None:
    pricing = stripe()
    for currency in ("usd", "eur", "gbp", "jpy", "cad", "aud", "chf", "inr", "brl", "mxn", "kwd"):
        assert pricing.estimate(call(f"amount=100&currency={currency}")).cost_micros > 0


def test_config_overrides_a_shipped_rate_and_adds_a_currency() -> None:
    pricing = stripe(fx={"EUR": "1.10", "xcd": 0.37})
    assert pricing.estimate(call("amount=1000&currency=eur")).cost_micros == 11_000_000
    assert pricing.estimate(call("amount=1000&currency=xcd")).cost_micros == 3_700_000


def test_currency_code_case_is_ignored() -> None:
    assert stripe().estimate(call("amount=100&currency=USD")).cost_micros == 1_000_000


def test_rounds_up_once_on_the_exact_product() -> None:
    # 3 x 0.0000003333333 USD = 0.9999999 micro-USD: one micro, not three rounded parts.
    pricing = stripe(fx={"jpy": "0.0000003333333"})
    assert pricing.estimate(call("amount=3&currency=jpy")).cost_micros == 1
    assert pricing.estimate(call("amount=0&currency=jpy")).cost_micros == 0


def test_json_body_is_accepted() -> None:
    body = json.dumps({"amount": 2000, "currency": "usd"})
    estimate = stripe().estimate(call(body, content_type="application/json; charset=utf-8"))
    assert estimate.cost_micros == 20_000_000
    as_string = json.dumps({"amount": "2000", "currency": "usd"})
    assert stripe().estimate(call(as_string, content_type="application/json")).cost_micros == (
        20_000_000
    )


def test_idempotency_key_is_surfaced() -> None:
    request = call("amount=2000&currency=usd", headers={"idempotency-key": "order-42"})
    estimate = stripe().estimate(request)
    assert estimate.idempotency_key == "order-42"
    again = stripe().estimate(request)
    assert again.idempotency_key == estimate.idempotency_key
    assert stripe().estimate(call("amount=2000&currency=usd")).idempotency_key is None


def test_idempotency_key_is_not_surfaced_for_free_calls() -> None:
    request = call("email=a@b.c", path="/v1/customers", headers={"idempotency-key": "k"})
    assert stripe().estimate(request).idempotency_key is None


def test_overlong_idempotency_key_is_refused() -> None:
    request = call("amount=1&currency=usd", headers={"idempotency-key": "k" * 256})
    assert refused(stripe(), request).details["param"] == "Idempotency-Key"


def test_unknown_currency_is_refused_by_name() -> None:
    error = refused(stripe(), call("amount=2000&currency=xyz"))
    assert "'xyz'" in error.message
    assert error.details["param"] == "currency"


@pytest.mark.parametrize("currency", ["", "us", "usdd", "12x"])
def test_malformed_currency_is_refused(currency: str) -> None:
    assert refused(stripe(), call(f"amount=1&currency={currency}")).details["param"] == "currency"


def test_missing_currency_is_refused() -> None:
    assert refused(stripe(), call("amount=2000")).details["param"] == "currency"


def test_missing_amount_is_refused() -> None:
    error = refused(stripe(), call("currency=usd"))
    assert error.details["param"] == "amount"
    assert "required" in error.message


def test_negative_amount_is_refused() -> None:
    error = refused(stripe(), call("amount=-2000&currency=usd"))
    assert error.details["param"] == "amount"
    assert "negative" in error.message


@pytest.mark.parametrize(
    "amount", ["20.00", "2e3", "", " 20", "+20", "1_000", "\u0663", "abc", "9" * 16]
)
def test_non_integer_amount_is_refused(amount: str) -> None:
    body = f"amount={amount}&currency=usd".encode()
    assert refused(stripe(), call(body)).details["param"] == "amount"


@pytest.mark.parametrize("amount", [20.5, 2000.0, True, None, [2000], {"v": 1}])
def test_non_integer_json_amount_is_refused(amount: object) -> None:
    body = json.dumps({"amount": amount, "currency": "usd"})
    error = refused(stripe(), call(body, content_type="application/json"))
    assert error.details["param"] == "amount"


def test_amount_given_twice_is_refused() -> None:
    # Outlay and Stripe could read different ones; refusing keeps the reservation a bound.
    error = refused(stripe(), call("amount=1&currency=usd&amount=999999"))
    assert error.details["param"] == "amount"


def test_unreadable_bodies_are_refused() -> None:
    refused(stripe(), call("{not json", content_type="application/json"))
    refused(stripe(), call("[1, 2]", content_type="application/json"))
    refused(stripe(), call(b"amount=%FF&currency=usd"))
    refused(stripe(), call(b"--x\r\n", content_type="multipart/form-data; boundary=x"))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/payment_intents", ""),
        ("GET", "/v1/payment_intents/pi_1", ""),
        ("GET", "/v1/customers", ""),
        ("POST", "/v1/customers", "email=a%40b.c"),
        ("DELETE", "/v1/customers/cus_1", ""),
        ("POST", "/v1/payment_intents/pi_1", "amount=5000"),  # an update moves no money
        ("POST", "/v1/payment_intents/pi_1/cancel", ""),
        ("POST", "/v1/refunds", "payment_intent=pi_1&amount=500"),
        ("POST", "/v1/payment_intents/pi_1/confirm", "payment_method=pm_card_visa"),
        ("POST", "/v1/payment_intents/pi_1/capture", ""),
        ("POST", "/v1/charges/ch_1/capture", ""),
    ],
)
def test_calls_that_move_no_money_are_free(method: str, path: str, body: str) -> None:
    request = call(body, path=path, method=method)
    estimate = stripe().estimate(request)
    assert estimate.cost_micros == 0
    assert estimate.body == request.body
    assert estimate.idempotency_key is None


def test_confirm_without_amount_says_why_it_is_free() -> None:
    estimate = stripe().estimate(call("", path="/v1/payment_intents/pi_1/confirm"))
    assert estimate.describe == (
        "POST /v1/payment_intents/pi_1/confirm: no amount given, not reserved here"
    )


def test_capture_with_amount_and_currency_is_priced() -> None:
    request = call("amount_to_capture=1500&currency=usd", path="/v1/payment_intents/pi_1/capture")
    estimate = stripe().estimate(request)
    assert estimate.cost_micros == 15_000_000
    assert estimate.describe == "payment_intent capture pi_1 1500 usd"


def test_capture_amount_without_currency_is_bounded_by_the_dearest_currency() -> None:
    pricing = stripe(fx={"gbp": 1.25, "kwd": 3.25, "eur": 1.10})
    request = call("amount_to_capture=1000", path="/v1/payment_intents/pi_1/capture")
    estimate = pricing.estimate(request)
    # Per smallest unit: gbp 0.0125, eur 0.011, usd 0.01, kwd 0.00325 (three-decimal).
    assert estimate.cost_micros == 12_500_000
    assert "bounded at gbp" in estimate.describe


def test_charge_capture_with_amount_is_priced() -> None:
    request = call("amount=700&currency=usd", path="/v1/charges/ch_1/capture")
    assert stripe().estimate(request).cost_micros == 7_000_000


@pytest.mark.parametrize(
    "path",
    [
        "/v1/payment%5Fintents",
        "/v1//payment_intents/",
        "/V1/Payment_Intents",
        "/v1/customers/../payment_intents",
        "/v1/./payment_intents?expand[]=latest_charge",
    ],
)
def test_disguised_paths_are_still_priced(path: str) -> None:
    assert stripe().estimate(call("amount=100&currency=usd", path=path)).cost_micros == 1_000_000


def test_actual_uses_the_returned_amount_and_currency() -> None:
    pricing = stripe()
    request = call("amount=2000&currency=usd")
    estimate = pricing.estimate(request)
    answer = json.dumps({"object": "payment_intent", "amount": 1500, "currency": "usd"})
    assert pricing.actual(request, 200, answer.encode(), estimate) == 15_000_000


def test_actual_of_a_capture_reads_what_was_received() -> None:
    pricing = stripe()
    request = call("amount_to_capture=500&currency=usd", path="/v1/payment_intents/pi_1/capture")
    estimate = pricing.estimate(request)
    answer = {"amount": 2000, "amount_received": 500, "currency": "usd"}
    assert pricing.actual(request, 200, json.dumps(answer).encode(), estimate) == 5_000_000


def test_actual_in_another_currency() -> None:
    pricing = stripe(fx={"jpy": 0.0067})
    request = call("amount=2000&currency=jpy")
    estimate = pricing.estimate(request)
    answer = json.dumps({"amount": 2000, "currency": "jpy"}).encode()
    assert pricing.actual(request, 200, answer, estimate) == 13_400_000


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (402, b'{"error": {"code": "card_declined"}}'),
        (200, b"not json"),
        (200, b"[]"),
        (200, b'{"amount": "2000", "currency": "usd"}'),
        (200, b'{"amount": 2000, "currency": "zzz"}'),
        (200, b'{"amount": -1, "currency": "usd"}'),
        (200, b'{"currency": "usd"}'),
    ],
)
def test_actual_is_none_when_the_answer_says_nothing_usable(status: int, answer: bytes) -> None:
    pricing = stripe()
    request = call("amount=2000&currency=usd")
    assert pricing.actual(request, status, answer, pricing.estimate(request)) is None


def test_actual_of_a_free_call_is_none() -> None:
    pricing = stripe()
    request = call("", path="/v1/customers")
    answer = b'{"amount": 2000, "currency": "usd"}'
    assert pricing.actual(request, 200, answer, pricing.estimate(request)) is None


@pytest.mark.parametrize(
    "fx",
    [
        {"eur": 0},
        {"eur": -1},
        {"eur": "abc"},
        {"eur": True},
        {"eur": None},
        {"euro": 1.08},
        {"e1r": 1.08},
        {"eur": "1e999999"},
    ],
)
def test_bad_fx_config_is_refused(fx: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"vendors\.stripe\.fx\."):
        stripe(fx=fx)


def test_fx_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match=r"vendors\.stripe\.fx: expected a mapping"):
        stripe(fx=[1.08])
