"""Twilio calls and numbers: a call reserves the destination's price a minute times the minutes of
its TimeLimit (4 hours when it names none) and may be sent with a lower one; buying a number
reserves its first month."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, pricing_for
from outlay.vendors.base import VendorEstimate

FORM = "application/x-www-form-urlencoded"
CALLS = "/2010-04-01/Accounts/AC123/Calls.json"
NUMBERS = "/2010-04-01/Accounts/AC123/IncomingPhoneNumbers.json"


def estimate(path: str, body: str, **config: object) -> VendorEstimate:
    return pricing_for("twilio", config).estimate(
        VendorCall("twilio", "POST", path, FORM, body.encode(), {}))


def refused(path: str, body: str) -> str:
    with pytest.raises(BadRequest) as caught:
        estimate(path, body)
    param = caught.value.details["param"]
    assert isinstance(param, str)
    return param


def test_a_call_without_a_time_limit_reserves_four_hours_and_says_so() -> None:
    priced = estimate(CALLS, "To=%2B14155550100&From=%2B15017122661&Url=https://x")
    assert priced.cost_micros == 240 * 14_000  # $0.014 a minute
    assert parse_qs(priced.body.decode())["TimeLimit"] == ["14400"]
    assert priced.clamp is not None
    assert (priced.clamp.limit, priced.clamp.floor, priced.clamp.cost(3)) == (240, 1, 42_000)
    assert priced.describe == "call to US, up to 240 minutes at $0.014"


def test_a_minute_begun_is_a_minute_billed() -> None:
    priced = estimate(CALLS, "To=%2B447700900123&TimeLimit=61&From=%2B15017122661")
    assert priced.cost_micros == 2 * 40_000
    assert parse_qs(priced.body.decode())["TimeLimit"] == ["61"]  # the agent's own, kept


def test_a_lowered_limit_is_forwarded_in_whole_minutes() -> None:
    priced = estimate(CALLS, "To=%2B14155550100&timelimit=3600&From=%2B15017122661")
    assert priced.limited is not None
    body, headers = priced.limited(7)
    assert parse_qs(body.decode()) == {"To": ["+14155550100"], "From": ["+15017122661"],
                                       "TimeLimit": ["420"]}
    assert headers == {"X-Outlay-Time-Limit-Clamped": "420"}


@pytest.mark.parametrize(("to", "rate"), [("client:alice", 500_000), ("+99912345", 500_000),
                                          ("sip:bob@example.com", 500_000)])
def test_an_unknown_destination_pays_the_default_rate(to: str, rate: int) -> None:
    priced = estimate(CALLS, f"To={to.replace('+', '%2B')}&TimeLimit=60")
    assert priced.cost_micros == rate


def test_voice_rates_are_configurable() -> None:
    body = "To=%2B14155550100&TimeLimit=120"
    assert estimate(CALLS, body, voice_prices={"US": 0.02}).cost_micros == 40_000
    assert estimate(CALLS, "To=client:a&TimeLimit=60",
                    default_voice_price=1).cost_micros == 1_000_000


@pytest.mark.parametrize(("body", "param"), [
    ("To=%2B14155550100&TimeLimit=0", "TimeLimit"),
    ("To=%2B14155550100&TimeLimit=14401", "TimeLimit"),
    ("To=%2B14155550100&TimeLimit=1.5", "TimeLimit"),
    ("To=%2B14155550100&TimeLimit=60&TimeLimit=6000", "TimeLimit"),
    ("From=%2B15017122661", "To"),
])
def test_a_call_whose_cost_cannot_be_read_is_refused(body: str, param: str) -> None:
    assert refused(CALLS, body) == param


@pytest.mark.parametrize(("body", "usd"), [
    ("PhoneNumber=%2B14155550100", 1_150_000),
    ("PhoneNumber=%2B18005550100", 2_150_000),
    ("AreaCode=415", 1_150_000),
    ("AreaCode=888", 2_150_000),
    ("PhoneNumber=%2B442071838750", 1_150_000),
    ("PhoneNumber=%2B61291234567", 6_500_000),
    ("PhoneNumber=%2B9991234567", 25_000_000),
])
def test_a_number_reserves_its_first_month(body: str, usd: int) -> None:
    priced = estimate(NUMBERS, body)
    assert priced.cost_micros == usd
    assert priced.body == body.encode()


def test_number_prices_are_configurable() -> None:
    assert estimate(NUMBERS, "PhoneNumber=%2B14155550100",
                    number_prices={"US": 2}).cost_micros == 2_000_000
    assert estimate(NUMBERS, "PhoneNumber=%2B18005550100",
                    toll_free_number_prices={"US": 3}).cost_micros == 3_000_000
    assert estimate(NUMBERS, "PhoneNumber=%2B9991234567",
                    default_number_price=7).cost_micros == 7_000_000


@pytest.mark.parametrize(("body", "param"), [
    ("", "PhoneNumber"), ("PhoneNumber=4155550100", "PhoneNumber"),
    ("AreaCode=41", "AreaCode"), ("AreaCode=abc", "AreaCode")])
def test_a_number_that_cannot_be_priced_is_refused(body: str, param: str) -> None:
    assert refused(NUMBERS, body) == param


@pytest.mark.parametrize("option", ["voice_prices", "number_prices", "toll_free_number_prices"])
def test_bad_voice_and_number_prices_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=rf"vendors\.twilio\.{option}"):
        pricing_for("twilio", {option: {"US": -1}})
