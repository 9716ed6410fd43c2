"""vendor_endpoints: SPEC §9's vendors section, secrets resolved, into VendorEndpoints."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.upstream.vendors_http import VendorEndpoint, vendor_endpoints

SID = "AC" + "0" * 32


def test_the_spec_example_gives_every_vendor_its_auth() -> None:
    endpoints = vendor_endpoints(
        {
            "stripe": {"base_url": "https://api.stripe.com", "secret": "sk_live_1"},
            "twilio": {
                "base_url": "https://api.twilio.com",
                "account_sid": SID,
                "auth_token": "tok",
            },
            "resend": {"base_url": "https://api.resend.com/", "api_key": "re_1"},
        }
    )
    assert endpoints == {
        "stripe": VendorEndpoint("https://api.stripe.com", "bearer", "sk_live_1"),
        "twilio": VendorEndpoint(
            "https://api.twilio.com", "basic", "tok", username=SID, account_sid=SID
        ),
        "resend": VendorEndpoint("https://api.resend.com", "bearer", "re_1"),
    }


def test_known_vendors_default_to_their_real_base_urls() -> None:
    endpoints = vendor_endpoints(
        {
            "stripe": {"secret": "sk"},
            "twilio": {"account_sid": SID, "auth_token": "t"},
            "resend": {"api_key": "re"},
        }
    )
    assert {name: e.base_url for name, e in endpoints.items()} == {
        "stripe": "https://api.stripe.com",
        "twilio": "https://api.twilio.com",
        "resend": "https://api.resend.com",
    }


@pytest.mark.parametrize(
    "section",
    [
        {"stripe": {"base_url": "https://api.stripe.com", "secret": None}},
        {"stripe": {"secret": ""}},
        {"resend": {}},
        {"twilio": {"account_sid": SID, "auth_token": None}},
        {"twilio": {"account_sid": None, "auth_token": "t"}},
        {"acme": {"base_url": "https://acme.example", "secret": None}},
    ],
)
def test_a_vendor_without_its_secret_is_not_configured(section: dict[str, Any]) -> None:
    assert vendor_endpoints(section) == {}


def test_other_vendors_read_auth_secret_and_header_name() -> None:
    endpoints = vendor_endpoints(
        {
            "acme": {"base_url": "https://acme.example/api", "secret": "a"},
            "mailco": {
                "base_url": "https://mail.example",
                "auth": "basic",
                "username": "api",
                "secret": "m",
            },
            "sms": {
                "base_url": "https://sms.example",
                "auth": "header",
                "header_name": "X-Sms-Key",
                "secret": "s",
                "cost": {"fixed_usd": 0.01},
            },
        }
    )
    assert endpoints == {
        "acme": VendorEndpoint("https://acme.example/api", "bearer", "a"),
        "mailco": VendorEndpoint("https://mail.example", "basic", "m", username="api"),
        "sms": VendorEndpoint("https://sms.example", "header", "s", header_name="X-Sms-Key"),
    }


def test_alias_keys_keep_a_slip_from_falling_back_to_simulation() -> None:
    endpoints = vendor_endpoints({"stripe": {"api_key": "sk"}, "resend": {"secret": "re"}})
    assert endpoints["stripe"].secret == "sk"
    assert endpoints["resend"].secret == "re"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"acme": {"secret": "s"}}, r"vendors\.acme\.base_url is required"),
        ({"acme": {"base_url": "ftp://x", "secret": "s"}}, "http"),
        ({"stripe": {"base_url": "not a url", "secret": "s"}}, "http"),
        ({"acme": {"base_url": "https://a.example", "auth": "oauth"}}, r"vendors\.acme\.auth"),
        ({"acme": {"base_url": "https://a.example", "auth": "header"}}, "header_name"),
        ({"stripe": {"secret": 123}}, r"vendors\.stripe\.secret must be a string"),
    ],
)
def test_a_section_that_cannot_work_is_an_error(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vendor_endpoints(section)
