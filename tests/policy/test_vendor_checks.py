"""Least privilege on vendor calls, decided from the policies alone: operations, accounts and
destinations, the tightest of all scopes."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.decide import precheck
from outlay.policy.decision import Call, ScopeView
from outlay.policy.model import PolicyError, parse_policy
from outlay.policy.vendor_access import destination_allowed, operation, operation_allowed

VENDORS = ("stripe", "twilio", "resend")


def views(*policies: dict[str, Any] | None) -> list[ScopeView]:
    scopes = ("key:k", "agent:a", "group:g", "vendor:stripe", "global")
    return [ScopeView(scope, None if p is None else parse_policy(p, VENDORS))
            for scope, p in zip(scopes, policies, strict=False)]


def stripe(method: str, path: str, *accounts: str, any_account: bool = False) -> Call:
    return Call(vendor="stripe", operation=(method, path), accounts=accounts,
                any_account=any_account)


def code(call: Call, scopes: list[ScopeView]) -> str | None:
    refused = precheck(call, scopes)
    return None if refused is None else refused.error.code


def test_an_operation_must_match_a_method_and_a_glob() -> None:
    allowed = ["POST /v1/payment_intents", "POST /v1/payment_intents/*/confirm", "GET /v1/**"]
    assert operation_allowed(allowed, "POST", "/v1/payment_intents")
    assert operation_allowed(allowed, "POST", "/v1/payment_intents/pi_1/confirm")
    assert operation_allowed(allowed, "GET", "/v1/charges/ch_1/refunds")
    assert not operation_allowed(allowed, "POST", "/v1/payment_intents/pi_1/cancel")
    assert not operation_allowed(allowed, "POST", "/v1/refunds")
    assert not operation_allowed(allowed, "DELETE", "/v1/customers/cus_1")
    assert operation_allowed(["* /v1/*"], "DELETE", "/v1/customers")
    assert operation("post  /v1/x")[0] == "POST"


def test_no_entry_keeps_todays_behaviour_and_the_tightest_scope_applies() -> None:
    call = stripe("POST", "/v1/refunds")
    assert code(call, views(None, {}, {"operations": {"twilio": ["GET /**"]}})) is None
    wide = {"operations": {"stripe": ["* /**"]}}
    narrow = {"operations": {"stripe": ["POST /v1/payment_intents"]}}
    refused = precheck(call, views(wide, None, None, None, narrow))
    assert refused is not None
    assert refused.scope == "global"
    assert refused.error.status == 403
    assert refused.error.details == {"vendor": "stripe", "method": "POST", "path": "/v1/refunds",
                                     "allowed": ["POST /v1/payment_intents"],
                                     "scope": "global"}
    assert code(Call(vendor="stripe"), views(narrow)) is None  # not a vendor call


def test_an_account_header_needs_a_listing_or_any() -> None:
    listed = {"accounts": {"stripe": ["acct_1"]}}
    assert code(stripe("GET", "/v1/x"), views()) is None
    assert code(stripe("GET", "/v1/x", "acct_1"), views()) == "account_not_allowed"
    assert code(stripe("GET", "/v1/x", "acct_1", any_account=True), views()) is None
    assert code(stripe("GET", "/v1/x", "acct_1"), views(listed)) is None
    assert code(stripe("GET", "/v1/x", "acct_1", "acct_2"), views(listed)) == "account_not_allowed"
    # a listing is a limit even where the configuration lets any account be named
    assert code(stripe("GET", "/v1/x", "acct_2", any_account=True),
                views(None, listed)) == "account_not_allowed"


def test_destinations_are_countries_or_recipient_patterns() -> None:
    twilio = {"destinations": {"twilio": ["US", "CA"]}}
    sms = Call(vendor="twilio", operation=("POST", "/2010-04-01/Accounts/AC1/Messages.json"),
               destinations=("GB",))
    refused = precheck(sms, views(twilio))
    assert refused is not None
    assert refused.error.code == "destination_not_allowed"
    assert refused.error.details["destination"] == "GB"
    assert destination_allowed(["*@example.com"], "Boss@EXAMPLE.com")
    assert not destination_allowed(["*@example.com"], "a@example.com.evil.test")
    assert not destination_allowed(["US"], "unknown country")


@pytest.mark.parametrize(("raw", "field"), [
    ({"operations": {"stripe": ["/v1/refunds"]}}, "operations.stripe[0]"),
    ({"operations": {"stripe": ["POST /v1/***"]}}, "operations.stripe[0]"),
    ({"operations": {"stripe": ["POST /v1/a b"]}}, "operations.stripe[0]"),
    ({"operations": {"stripe": ["P0ST /v1/a"]}}, "operations.stripe[0]"),
    ({"operations": {"acme": ["POST /v1/a"]}}, "operations.acme"),
    ({"operations": {"stripe": "POST /v1/a"}}, "operations.stripe"),
    ({"accounts": ["acct_1"]}, "accounts"),
    ({"destinations": {"resend": [3]}}, "destinations.resend[0]"),
])
def test_bad_lists_name_their_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(raw, VENDORS)
    assert error.value.field == field
    assert field in str(error.value)


def test_lists_round_trip_and_any_vendor_when_stored() -> None:
    raw = {"operations": {"stripe": ["POST /v1/payment_intents"]},
           "accounts": {"stripe": ["acct_1"]}, "destinations": {"acme": ["*@x.test"]}}
    policy = parse_policy(raw)  # a stored policy: its vendor may have left the configuration
    assert {k: policy.to_dict()[k] for k in raw} == raw
    assert parse_policy(policy.to_dict()) == policy


def test_a_destination_that_cannot_be_read_is_in_no_list() -> None:
    from outlay.vendors.base import VendorCall
    from outlay.vendors.destinations import UNREADABLE, destinations

    def resend(path: str, body: bytes) -> VendorCall:
        return VendorCall("resend", "POST", path, "application/json", body, {})

    assert destinations(resend("/emails", b"not json")) == (UNREADABLE,)
    assert destinations(resend("/emails", b'{"to": "A <a@x.test>, b@y.test", "bcc": ['
                                          b'"c@z.test"]}')) == ("a@x.test", "b@y.test",
                                                                 "c@z.test")
    assert destinations(resend("/broadcasts", b'{"audience_id": "aud_1", "send": true}')) == (
        "audience aud_1",)
    assert destinations(resend("/broadcasts", b'{"audience_id": "aud_1"}')) == ()
    sms = VendorCall("twilio", "POST", "/2010-04-01/Accounts/AC1/Messages.json",
                     "application/x-www-form-urlencoded", b"To=%2B447700900123&Body=x", {})
    assert destinations(sms) == ("GB",)
    national = VendorCall("twilio", "POST", "/2010-04-01/Accounts/AC1/Calls.json",
                          "application/x-www-form-urlencoded", b"To=07700900123", {})
    assert destinations(national) == ("unknown country",)
