"""Twilio Messages: segments x the destination's price, with MaxPrice set to the reservation."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import parse_qs, urlencode

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, VendorPricing, pricing_for
from outlay.vendors.twilio_countries import country_of

MESSAGES = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
FORM = "application/x-www-form-urlencoded"
EMOJI = "\U0001f600"
GB = "+447700900123"


def twilio(**config: object) -> VendorPricing:
    return pricing_for("twilio", config)


def call(
    fields: dict[str, str] | str | bytes | None = None,
    path: str = MESSAGES,
    method: str = "POST",
    content_type: str = FORM,
) -> VendorCall:
    if isinstance(fields, dict):
        body = urlencode(fields).encode()
    elif isinstance(fields, str):
        body = fields.encode()
    else:
        body = fields or b""
    return VendorCall("twilio", method, path, content_type, body, {})


def message(to: str = GB, body: str = "Hello", **extra: str) -> VendorCall:
    return call({"To": to, "From": "+15005550006", "Body": body, **extra})


def forwarded(estimate_body: bytes) -> dict[str, list[str]]:
    return parse_qs(estimate_body.decode(), keep_blank_values=True)


def refused(pricing: VendorPricing, request: VendorCall, code: str = "invalid_request") -> str:
    with pytest.raises(BadRequest) as caught:
        pricing.estimate(request)
    assert (caught.value.status, caught.value.code) == (400, code)
    param = caught.value.details["param"]
    assert isinstance(param, str)
    return param


def test_two_segments_to_gb_at_the_configured_price() -> None:
    pricing = twilio(sms_prices={"GB": 0.0524})
    estimate = pricing.estimate(message(body="a" * 161))
    assert estimate.cost_micros == 104_800
    assert estimate.describe == "sms 2 segments to GB"
    assert estimate.idempotency_key is None


def test_max_price_is_added_and_equals_the_reservation() -> None:
    request = message(body="a" * 161)
    estimate = twilio(sms_prices={"GB": 0.0524}).estimate(request)
    assert estimate.body == request.body + b"&MaxPrice=0.1048"
    assert forwarded(estimate.body)["MaxPrice"] == ["0.1048"]


def test_emoji_costs_the_ucs2_segment_count() -> None:
    pricing = twilio(sms_prices={"US": "0.0083"})
    one = pricing.estimate(message(to="+12125550100", body="a" * 68 + EMOJI))
    two = pricing.estimate(message(to="+12125550100", body="a" * 69 + EMOJI))
    assert (one.cost_micros, one.describe) == (8_300, "sms 1 segment (UCS-2) to US")
    assert (two.cost_micros, two.describe) == (16_600, "sms 2 segments (UCS-2) to US")
    assert forwarded(two.body)["MaxPrice"] == ["0.0166"]


def test_extended_characters_count_two() -> None:
    pricing = twilio(sms_prices={"GB": 0.05})
    assert pricing.estimate(message(body="{" * 80)).cost_micros == 50_000
    assert pricing.estimate(message(body="{" * 81)).cost_micros == 100_000


def test_shipped_prices_cover_the_main_destinations() -> None:
    pricing = twilio(default_sms_price=99)
    for to in ("+12125550100", "+14165550100", GB, "+4915112345678", "+33612345678",
               "+919812345678", "+5511912345678", "+61412345678", "+819012345678",
               "+5215512345678", "+34612345678", "+393123456789", "+31612345678",
               "+46701234567"):  # fmt: skip
        cost = pricing.estimate(message(to=to)).cost_micros
        assert 0 < cost < 1_000_000, to


def test_unknown_country_gets_the_default_price() -> None:
    pricing = twilio(default_sms_price="0.25")
    estimate = pricing.estimate(message(to="+99912345678"))
    assert estimate.cost_micros == 250_000
    assert estimate.describe == "sms 1 segment to an unknown country"
    # A national number names no country either.
    assert pricing.estimate(message(to="07700900123")).cost_micros == 250_000


def test_shipped_default_is_dearer_than_typical_routes() -> None:
    pricing = twilio()
    unknown = pricing.estimate(message(to="+99912345678")).cost_micros
    assert unknown > pricing.estimate(message(to=GB)).cost_micros
    assert unknown > pricing.estimate(message(to="+12125550100")).cost_micros


def test_whatsapp_is_priced_like_an_sms_to_that_country() -> None:
    pricing = twilio(sms_prices={"GB": 0.0524})
    estimate = pricing.estimate(message(to="whatsapp:" + GB, body="a" * 500))
    assert (estimate.cost_micros, estimate.describe) == (52_400, "whatsapp message to GB")
    assert forwarded(estimate.body)["MaxPrice"] == ["0.0524"]


@pytest.mark.parametrize(
    ("digits", "country"),
    [
        ("12125550100", "US"), ("14165550100", "CA"), ("16045550100", "CA"),
        ("18765550100", "JM"), ("17875550100", "PR"), ("447700900123", "GB"),
        ("4915112345678", "DE"), ("33612345678", "FR"), ("919812345678", "IN"),
        ("5511912345678", "BR"), ("61412345678", "AU"), ("819012345678", "JP"),
        ("5215512345678", "MX"), ("34612345678", "ES"), ("393123456789", "IT"),
        ("31612345678", "NL"), ("46701234567", "SE"), ("74951234567", "RU"),
        ("77011234567", "KZ"), ("353851234567", "IE"), ("971501234567", "AE"),
        ("8613812345678", "CN"), ("852912345678", "HK"), ("2348031234567", "NG"),
        ("99912345678", None),
    ],
)  # fmt: skip
def test_country_from_calling_code(digits: str, country: str | None) -> None:
    assert country_of(digits) == country


def test_to_may_carry_separators() -> None:
    pricing = twilio(sms_prices={"US": 0.01})
    assert pricing.estimate(message(to="+1 (212) 555-0100")).describe == "sms 1 segment to US"


def test_agents_lower_max_price_is_kept_and_a_higher_one_replaced() -> None:
    pricing = twilio(sms_prices={"GB": 0.0524})
    lower = pricing.estimate(message(MaxPrice="0.01"))
    assert forwarded(lower.body)["MaxPrice"] == ["0.01"]
    assert lower.cost_micros == 52_400  # Twilio may ignore MaxPrice: reserve the full estimate
    higher = pricing.estimate(message(MaxPrice="5.00"))
    assert forwarded(higher.body)["MaxPrice"] == ["0.0524"]


def test_max_price_in_any_case_is_replaced_once() -> None:
    request = call("To=%2B447700900123&maxprice=9&Body=hi&From=%2B1500")
    estimate = twilio(sms_prices={"GB": 0.05}).estimate(request)
    assert estimate.body == b"To=%2B447700900123&Body=hi&From=%2B1500&MaxPrice=0.05"


@pytest.mark.parametrize("value", ["abc", "-1", "NaN", "inf"])
def test_bad_max_price_is_refused(value: str) -> None:
    assert refused(twilio(), message(MaxPrice=value)) == "MaxPrice"


def test_missing_to_is_refused() -> None:
    assert refused(twilio(), call({"From": "+15005550006", "Body": "hi"})) == "To"
    assert refused(twilio(), call({"To": " ", "Body": "hi"})) == "To"


@pytest.mark.parametrize("to", ["hello", "+1", "+1234567890123456", "++44770090"])
def test_to_that_is_no_number_is_refused(to: str) -> None:
    assert refused(twilio(), message(to=to)) == "To"


def test_missing_or_empty_body_is_refused() -> None:
    assert refused(twilio(), call({"To": GB, "From": "+15005550006"})) == "Body"
    assert refused(twilio(), message(body="")) == "Body"


def test_fields_given_twice_are_refused() -> None:
    assert refused(twilio(), call("To=%2B447700900123&To=%2B99912345678&Body=hi")) == "To"
    assert refused(twilio(), call("To=%2B447700900123&Body=a&body=" + "b" * 400)) == "Body"


def test_json_body_is_refused() -> None:
    request = call(json.dumps({"To": GB, "Body": "hi"}), content_type="application/json")
    with pytest.raises(BadRequest, match="form-encoded"):
        twilio().estimate(request)


def test_mms_to_us_is_priced_per_message() -> None:
    pricing = twilio(mms_prices={"US": "0.0220"})
    estimate = pricing.estimate(
        call({"To": "+12125550100", "MediaUrl": "https://example.com/a.png"})
    )
    assert (estimate.cost_micros, estimate.describe) == (22_000, "mms to US")


def test_mms_without_a_price_is_refused_as_price_unknown() -> None:
    request = message(MediaUrl="https://example.com/a.png")
    assert refused(twilio(), request, code="price_unknown") == "MediaUrl"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", MESSAGES),
        ("GET", MESSAGES.replace(".json", "/SM123.json")),
        ("POST", MESSAGES.replace(".json", "/SM123.json")),
        ("DELETE", MESSAGES.replace(".json", "/SM123.json")),
        ("GET", "/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json"),
    ],
)
def test_other_endpoints_are_free(method: str, path: str) -> None:
    request = call({"Body": "redacted"}, path=path, method=method)
    estimate = twilio().estimate(request)
    assert (estimate.cost_micros, estimate.body) == (0, request.body)


@pytest.mark.parametrize(
    "path", [MESSAGES.replace(".json", ""), MESSAGES.lower(), MESSAGES + "?x=1", "/" + MESSAGES]
)
def test_messages_path_variants_are_priced(path: str) -> None:
    assert twilio().estimate(replace(message(), path=path)).cost_micros > 0


def test_zero_priced_route_is_free_and_unchanged() -> None:
    request = message()
    estimate = twilio(sms_prices={"GB": 0}).estimate(request)
    assert (estimate.cost_micros, estimate.body) == (0, request.body)


def test_actual_reads_the_negative_usd_price() -> None:
    pricing = twilio()
    request = message()
    estimate = pricing.estimate(request)
    answer = json.dumps({"sid": "SM1", "price": "-0.01580", "price_unit": "USD"}).encode()
    assert pricing.actual(request, 201, answer, estimate) == 15_800


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (201, {"sid": "SM1", "price": None, "price_unit": "USD"}),
        (201, {"sid": "SM1"}),
        (201, {"price": "-0.05", "price_unit": "EUR"}),
        (201, {"price": "n/a", "price_unit": "USD"}),
        (400, {"code": 21211, "message": "Invalid 'To' Phone Number"}),
    ],
)
def test_actual_is_none_until_twilio_knows_the_price(status: int, answer: object) -> None:
    pricing = twilio()
    request = message()
    estimate = pricing.estimate(request)
    assert pricing.actual(request, status, json.dumps(answer).encode(), estimate) is None


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"sms_prices": {"GBR": 0.05}}, "not an ISO 3166"),
        ({"sms_prices": {"GB": -1}}, r"sms_prices\.GB"),
        ({"sms_prices": {"GB": "cheap"}}, r"sms_prices\.GB"),
        ({"sms_prices": {False: 0.068}}, "quote country codes"),
        ({"sms_prices": [0.05]}, "expected a mapping"),
        ({"mms_prices": {"US": None}}, r"mms_prices\.US"),
        ({"default_sms_price": "x"}, "default_sms_price"),
    ],
)
def test_bad_config_is_refused(config: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        twilio(**config)


def test_agents_max_price_is_forwarded_in_plain_decimal() -> None:
    estimate = twilio(sms_prices={"GB": 0.0524}).estimate(message(MaxPrice="1e-2"))
    assert forwarded(estimate.body)["MaxPrice"] == ["0.01"]
