"""The shared pieces: the public surface, path normalisation, exact money, body reading."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import outlay.vendors
from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, pricing_for
from outlay.vendors.base import config_usd, exact_micros, route_path
from outlay.vendors.bodies import Fields, read_json
from outlay.vendors.objects import ObjectPricing


def test_exported_names() -> None:
    assert outlay.vendors.__all__ == [
        "BUILTIN_VENDORS",
        "Segments",
        "VendorCall",
        "VendorEstimate",
        "VendorPricing",
        "pricing_for",
        "sms_segments",
    ]
    assert outlay.vendors.BUILTIN_VENDORS == ("stripe", "twilio", "resend")


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/payment_intents", "/v1/payment_intents"),
        ("/v1/payment_intents/", "/v1/payment_intents"),
        ("//v1///payment_intents", "/v1/payment_intents"),
        ("/v1/./x/../payment_intents", "/v1/payment_intents"),
        ("/../../v1/charges", "/v1/charges"),
        ("/v1/payment%5Fintents?limit=3#frag", "/v1/payment_intents"),
        ("v1/charges", "/v1/charges"),
        ("", "/"),
    ],
)
def test_route_path(path: str, route: str) -> None:
    assert route_path(path) == route


def test_exact_micros_rounds_up_once() -> None:
    assert exact_micros(2000, Fraction(1, 100)) == 20_000_000
    assert exact_micros(3, Decimal("0.0000003333333")) == 1
    assert exact_micros(Decimal("0.0000001")) == 1
    assert exact_micros(0, Decimal("5")) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, Decimal("0.1")),
        (1, Decimal(1)),
        ("0.0524", Decimal("0.0524")),
        (0.0067, Decimal("0.0067")),
    ],
)
def test_config_usd_reads_exactly(value: object, expected: Decimal) -> None:
    assert config_usd(value, "here") == expected


@pytest.mark.parametrize("value", [-1, "x", None, True, [], "NaN", "Infinity", "1e20", "1e-30"])
def test_config_usd_refuses_with_the_setting_named(value: object) -> None:
    with pytest.raises(ValueError, match=r"^here: "):
        config_usd(value, "here")


def test_config_usd_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        config_usd(0, "here", positive=True)


def json_call(body: bytes, content_type: str = "application/json") -> VendorCall:
    return VendorCall("x", "POST", "/", content_type, body, {})


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1, "a": 2}', b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b"[" * 100_000, b""],
)
def test_ambiguous_or_unreadable_json_is_refused(body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        read_json(json_call(body))
    assert caught.value.code == "invalid_request"


def test_fields_refuse_a_name_given_twice_in_any_case() -> None:
    form = "application/x-www-form-urlencoded"
    fields = Fields.of(json_call(b"To=1&to=2&Body=x", form), "form")
    assert fields.get("Body") == "x"
    assert fields.get("To") == "1"
    with pytest.raises(BadRequest, match="more than once"):
        fields.get("To", any_case=True)


@pytest.mark.parametrize("config", [None, [], "stripe"])
def test_vendor_config_must_be_a_mapping(config: Any) -> None:
    with pytest.raises(ValueError, match=r"vendors\.stripe: expected a mapping"):
        pricing_for("stripe", config)


def test_rules_come_before_a_builtin_vendors_catalogue() -> None:
    pricing = pricing_for("resend", {"rules": [
        {"method": "POST", "path": "/broadcasts/*/send", "usd": 5},
        {"method": "POST", "path": "/emails", "usd": 0}]})
    send = VendorCall("resend", "POST", "/broadcasts/b_1/send", "", b"", {})
    assert pricing.estimate(send).cost_micros == 5_000_000
    email = VendorCall("resend", "POST", "/emails", "application/json",
                       b'{"from": "a@b.c", "to": "d@e.f"}', {})
    assert pricing.estimate(email).cost_micros == 0
    assert pricing.actual(email, 200, b"{}", pricing.estimate(email)) is None


def test_a_rule_takes_a_payment_out_of_stripes_hands() -> None:
    pricing = pricing_for("stripe", {"rules": [
        {"method": "POST", "path": "/v1/payment_intents", "usd": 1}]})
    request = VendorCall("stripe", "POST", "/v1/payment_intents", "", b"amount=9&currency=usd",
                         {})
    assert pricing.object_call(request) is None
    assert pricing.estimate(request).cost_micros == 1_000_000


def test_gateway_keys_in_the_section_are_left_alone() -> None:
    section = {"base_url": "https://api.stripe.com", "secret": "env:STRIPE_SECRET_KEY"}
    pricing = pricing_for("stripe", section)
    request = VendorCall("stripe", "POST", "/v1/charges", "", b"amount=100&currency=usd", {})
    assert isinstance(pricing, ObjectPricing)
    created = pricing.object_call(request)
    assert created is not None
    assert pricing.target(created, None) == 1_000_000


def test_free_call_description_is_one_printable_line() -> None:
    request = VendorCall("stripe", "GET", "/v1/customers%0Afake%09entry", "", b"", {})
    describe = pricing_for("stripe", {}).estimate(request).describe
    assert describe == "GET /v1/customers?fake?entry: moves no money"
