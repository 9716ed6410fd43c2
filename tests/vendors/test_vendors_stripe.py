"""Stripe: payment amounts in each currency's smallest unit, converted to exact micro-USD; payment
intents and charges counted by exposure (what they moved plus what they can still move)."""

from __future__ import annotations

import json

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, pricing_for
from outlay.vendors.objects import ObjectCall, ObjectSeen
from outlay.vendors.stripe import StripePricing

FORM = "application/x-www-form-urlencoded"
ZERO_DECIMAL = ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx",
                "vnd", "vuv", "xaf", "xof", "xpf"]  # fmt: skip
THREE_DECIMAL = ["bhd", "jod", "kwd", "omr", "tnd"]


def stripe(**config: object) -> StripePricing:
    return StripePricing.from_config(config)


def call(
    body: str | bytes = b"",
    path: str = "/v1/payment_intents",
    method: str = "POST",
    content_type: str = FORM,
    headers: dict[str, str] | None = None,
) -> VendorCall:
    raw = body.encode() if isinstance(body, str) else body
    return VendorCall("stripe", method, path, content_type, raw, headers or {})


def on_object(pricing: StripePricing, request: VendorCall) -> ObjectCall:
    found = pricing.object_call(request)
    assert found is not None
    return found


def created(pricing: StripePricing, request: VendorCall) -> int:
    """What a create reserves: its amount in micro-USD."""
    return pricing.target(on_object(pricing, request), None)


def refused(pricing: StripePricing, request: VendorCall) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        pricing.object_call(request)
    assert caught.value.code == "invalid_request"
    assert caught.value.status == 400
    return caught.value


def test_usd_payment_intent_is_exact() -> None:
    request = call("amount=2000&currency=usd&payment_method_types[]=card")
    found = on_object(stripe(), request)
    assert found == ObjectCall("payment_intent", "create", None, None, (), 2000, "usd", None,
                               "payment_intent create 2000 usd")
    assert stripe().target(found, None) == 20_000_000


def test_charge_create_is_priced() -> None:
    request = call("amount=999&currency=usd", path="/v1/charges")
    assert (on_object(stripe(), request).kind, created(stripe(), request)) == (
        "charge", 9_990_000)


def test_zero_decimal_jpy_is_whole_yen_times_rate() -> None:
    assert created(stripe(fx={"jpy": 0.0067}), call("amount=2000&currency=jpy")) == 13_400_000


@pytest.mark.parametrize("currency", ZERO_DECIMAL)
def test_every_stripe_zero_decimal_currency(currency: str) -> None:
    assert created(stripe(fx={currency: 1}), call(f"amount=7&currency={currency}")) == 7_000_000


def test_kwd_is_three_decimal() -> None:
    # 1.500 KWD at 3.25 USD per dinar
    assert created(stripe(fx={"kwd": "3.25"}), call("amount=1500&currency=kwd")) == 4_875_000


@pytest.mark.parametrize("currency", THREE_DECIMAL)
def test_every_stripe_three_decimal_currency(currency: str) -> None:
    assert created(stripe(fx={currency: 2}), call(f"amount=1000&currency={currency}")) == (
        2_000_000)


@pytest.mark.parametrize("currency", ["isk", "huf", "twd"])
def test_stripe_special_cases_stay_two_decimal(currency: str) -> None:
    assert created(stripe(fx={currency: 1}), call(f"amount=500&currency={currency}")) == (
        5_000_000)


def test_shipped_table_prices_the_main_currencies() -> None:
    pricing = stripe()
    for currency in ("usd", "eur", "gbp", "jpy", "cad", "aud", "chf", "inr", "brl", "mxn", "kwd"):
        assert created(pricing, call(f"amount=100&currency={currency}")) > 0


def test_config_overrides_a_shipped_rate_and_adds_a_currency() -> None:
    pricing = stripe(fx={"EUR": "1.10", "xcd": 0.37})
    assert created(pricing, call("amount=1000&currency=eur")) == 11_000_000
    assert created(pricing, call("amount=1000&currency=xcd")) == 3_700_000


def test_currency_code_case_is_ignored() -> None:
    assert created(stripe(), call("amount=100&currency=USD")) == 1_000_000


def test_rounds_up_once_on_the_exact_product() -> None:
    # 3 x 0.0000003333333 USD = 0.9999999 micro-USD: one micro, not three rounded parts.
    pricing = stripe(fx={"jpy": "0.0000003333333"})
    assert created(pricing, call("amount=3&currency=jpy")) == 1
    assert created(pricing, call("amount=0&currency=jpy")) == 0


def test_json_body_is_accepted() -> None:
    body = json.dumps({"amount": 2000, "currency": "usd"})
    assert created(stripe(), call(body, content_type="application/json; charset=utf-8")) == (
        20_000_000)
    as_string = json.dumps({"amount": "2000", "currency": "usd"})
    assert created(stripe(), call(as_string, content_type="application/json")) == 20_000_000


def test_idempotency_key_is_surfaced() -> None:
    request = call("amount=2000&currency=usd", headers={"idempotency-key": "order-42"})
    assert on_object(stripe(), request).idempotency_key == "order-42"
    assert on_object(stripe(), call("amount=2000&currency=usd")).idempotency_key is None


def test_calls_on_no_payment_carry_no_idempotency_key() -> None:
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
        ("GET", "/v1/refunds", ""),
        ("GET", "/v1/payouts/po_1", ""),
    ],
)
def test_calls_that_move_no_money_are_free(method: str, path: str, body: str) -> None:
    request = call(body, path=path, method=method)
    assert stripe().object_call(request) is None
    estimate = stripe().estimate(request)
    assert estimate.cost_micros == 0
    assert estimate.body == request.body
    assert estimate.idempotency_key is None


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
    assert created(stripe(), call("amount=100&currency=usd", path=path)) == 1_000_000


# -- calls on an existing payment intent or charge ---------------------------------------------
def intent(amount: int = 2000, received: int = 0, status: str = "requires_payment_method",
           currency: str = "usd") -> str:
    """A payment intent's state, as the store keeps it."""
    answer = {"object": "payment_intent", "id": "pi_1", "amount": amount, "currency": currency,
              "amount_received": received, "status": status}
    seen = stripe().seen(on_object(stripe(), call("amount=1&currency=usd")),
                         json.dumps(answer).encode())
    assert seen is not None
    return seen.state


@pytest.mark.parametrize(
    ("path", "body", "action", "amount"),
    [
        ("/v1/payment_intents/pi_1", "amount=5000", "update", 5000),
        ("/v1/payment_intents/pi_1", "description=x", "update", None),
        ("/v1/payment_intents/pi_1/confirm", "payment_method=pm_card_visa", "confirm", None),
        ("/v1/payment_intents/pi_1/capture", "amount_to_capture=500", "capture", None),
        ("/v1/payment_intents/pi_1/cancel", "", "cancel", None),
        ("/v1/payment_intents/pi_1/increment_authorization", "amount=9000",
         "increment_authorization", 9000),
        ("/v1/charges/ch_1", "description=x", "update", None),
        ("/v1/charges/ch_1/capture", "amount=700", "capture", None),
    ],
)
def test_every_post_on_a_payment_is_an_object_call(
        path: str, body: str, action: str, amount: int | None) -> None:
    found = on_object(stripe(), call(body, path=path))
    assert (found.action, found.amount, found.object_id) == (action, amount, path.split("/")[3])
    assert found.read_path == "/".join(path.split("/")[:4])


def test_an_update_that_raises_the_amount_targets_the_new_amount() -> None:
    update = on_object(stripe(), call("amount=500000", path="/v1/payment_intents/pi_1"))
    assert stripe().target(update, intent(100)) == 5_000_000_000
    lower = on_object(stripe(), call("amount=50", path="/v1/payment_intents/pi_1"))
    assert stripe().target(lower, intent(100)) == 500_000


def test_an_update_in_another_currency_targets_it_there() -> None:
    update = on_object(stripe(fx={"gbp": 1.25}),
                       call("currency=gbp", path="/v1/payment_intents/pi_1"))
    assert stripe(fx={"gbp": 1.25}).target(update, intent(1000)) == 12_500_000


@pytest.mark.parametrize("action", ["confirm", "capture", "cancel"])
def test_confirm_capture_and_cancel_can_add_nothing(action: str) -> None:
    found = on_object(stripe(), call("", path=f"/v1/payment_intents/pi_1/{action}"))
    assert stripe().target(found, intent(2000)) == 20_000_000  # what it holds already


def test_a_finished_intent_holds_what_it_moved() -> None:
    update = on_object(stripe(), call("amount=9000", path="/v1/payment_intents/pi_1"))
    assert stripe().target(update, intent(2000, 500, "succeeded")) == 5_000_000
    assert stripe().target(update, intent(2000, 0, "canceled")) == 0


def test_a_call_on_an_object_stripe_does_not_know_reserves_only_what_it_names() -> None:
    update = on_object(stripe(), call("amount=700&currency=usd",
                                      path="/v1/payment_intents/pi_1"))
    assert stripe().target(update, None) == 7_000_000
    confirm = on_object(stripe(), call("", path="/v1/payment_intents/pi_1/confirm"))
    assert stripe().target(confirm, None) == 0


def test_an_update_without_a_currency_of_an_unknown_object_is_bounded_by_the_dearest() -> None:
    pricing = stripe(fx={"gbp": 1.25, "kwd": 3.25, "eur": 1.10})
    update = on_object(pricing, call("amount=1000", path="/v1/payment_intents/pi_1"))
    # Per smallest unit: gbp 0.0125, eur 0.011, usd 0.01, kwd 0.00325 (three-decimal).
    assert pricing.target(update, None) == 12_500_000


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/payment_intents/pi_1/capture", "amount_to_capture=12.5", "amount_to_capture"),
        ("/v1/payment_intents/pi_1", "amount=-500", "amount"),
        ("/v1/charges/ch_1/capture", "amount=abc", "amount"),
        ("/v1/payment_intents/pi_1/increment_authorization", "", "amount"),
        ("/v1/payment_intents/pi_a%20b/capture", "", "id"),
        ("/v1/payment_intents/pi_a%00b", "", "id"),
        ("/v1/payment_intents/pi_%C3%A9", "", "id"),
        ("/v1/payment_intents/pi_1%2Fcapture", "", "id"),
        ("/v1/payment_intents/x/../pi_1/capture", "", "id"),
        ("/v1/payment_intents/pi_1", "currency=xyz", "currency"),
    ],
)
def test_bad_calls_on_a_payment_are_refused(path: str, body: str, param: str) -> None:
    assert refused(stripe(), call(body, path=path)).details["param"] == param


def test_a_connected_account_names_its_objects() -> None:
    found = on_object(stripe(), call("", path="/v1/payment_intents/pi_1/capture",
                                     headers={"stripe-account": "acct_42"}))
    assert (found.object_id, found.read_headers) == ("acct_42/pi_1",
                                                     (("Stripe-Account", "acct_42"),))
    error = refused(stripe(), call("", path="/v1/payment_intents/pi_1/capture",
                                   headers={"stripe-account": "acct 42"}))
    assert error.details["param"] == "Stripe-Account"


@pytest.mark.parametrize(
    ("answer", "exposure"),
    [
        ({"status": "requires_payment_method"}, 20_000_000),
        ({"status": "requires_capture"}, 20_000_000),
        ({"status": "succeeded", "amount_received": 500}, 5_000_000),
        ({"status": "canceled"}, 0),
        ({"status": "processing", "amount_received": 0}, 20_000_000),
    ],
)
def test_an_intent_holds_what_it_received_and_what_it_may_still(
        answer: dict[str, object], exposure: int) -> None:
    body = {"object": "payment_intent", "id": "pi_9", "amount": 2000, "currency": "usd",
            "amount_received": 0, **answer}
    found = on_object(stripe(), call("amount=2000&currency=usd"))
    assert stripe().seen(found, json.dumps(body).encode()) == ObjectSeen(
        "pi_9", intent(2000, int(str(body["amount_received"])), str(body["status"])), exposure)


@pytest.mark.parametrize(
    ("answer", "exposure"),
    [
        ({"captured": False}, 40_000_000),
        ({"captured": True, "amount_captured": 1000}, 10_000_000),
        ({"captured": False, "refunded": True}, 0),
        ({"captured": False, "status": "failed"}, 0),
    ],
)
def test_a_charge_holds_what_it_captured_or_may_still(
        answer: dict[str, object], exposure: int) -> None:
    body = {"object": "charge", "id": "ch_9", "amount": 4000, "currency": "usd",
            "amount_captured": 0, "status": "succeeded", **answer}
    found = on_object(stripe(), call("amount=4000&currency=usd", path="/v1/charges"))
    seen = stripe().seen(found, json.dumps(body).encode())
    assert seen is not None
    assert (seen.object_id, seen.exposure) == ("ch_9", exposure)


def test_an_answer_in_a_connected_account_is_named_by_it() -> None:
    found = on_object(stripe(), call("amount=100&currency=usd",
                                     headers={"stripe-account": "acct_42"}))
    body = {"object": "payment_intent", "id": "pi_9", "amount": 100, "currency": "usd",
            "amount_received": 0, "status": "requires_payment_method"}
    seen = stripe().seen(found, json.dumps(body).encode())
    assert seen is not None
    assert seen.object_id == "acct_42/pi_9"


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[]",
        b'{"object": "payment_intent", "amount": "2000", "currency": "usd"}',
        b'{"object": "payment_intent", "amount": 2000, "currency": "usd", "status": "x"}',
        b'{"object": "payment_intent", "amount": -1, "currency": "usd", "amount_received": 0, '
        b'"status": "succeeded"}',
        b'{"object": "charge", "amount": 1, "currency": "usd", "captured": "yes"}',
        b'{"object": "customer", "id": "cus_1"}',
        b'{"object": "charge", "id": "ch_1", "amount": 1, "currency": "usd", "captured": false}',
    ],
)
def test_an_answer_that_shows_no_such_object_is_none(answer: bytes) -> None:
    found = on_object(stripe(), call("amount=2000&currency=usd"))
    assert stripe().seen(found, answer) is None


def test_an_unknown_currency_in_an_answer_is_bounded_by_the_dearest() -> None:
    pricing = stripe(fx={"gbp": 1.25})
    found = on_object(pricing, call("amount=2000&currency=usd"))
    body = {"object": "payment_intent", "id": "pi_9", "amount": 1000, "currency": "zzz",
            "amount_received": 0, "status": "requires_payment_method"}
    seen = pricing.seen(found, json.dumps(body).encode())
    assert seen is not None
    assert seen.exposure == 12_500_000


def test_the_answer_of_a_call_on_an_object_keeps_its_name() -> None:
    found = on_object(stripe(), call("", path="/v1/payment_intents/pi_1/cancel"))
    body = {"object": "payment_intent", "id": "pi_1", "amount": 100, "currency": "usd",
            "amount_received": 0, "status": "canceled"}
    assert stripe().seen(found, json.dumps(body).encode()) == ObjectSeen(
        "pi_1", intent(100, 0, "canceled"), 0)


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
        pricing_for("stripe", {"fx": fx})


def test_fx_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match=r"vendors\.stripe\.fx: expected a mapping"):
        stripe(fx=[1.08])
