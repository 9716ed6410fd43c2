"""Which agent headers reach a vendor: a shipped list per built-in vendor, `forward_headers`,
and what is never forwarded."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from outlay.gateway.vendor_headers import vendor_headers

BUILTIN = ("stripe", "twilio", "resend")
HOSTILE = {"X-Forwarded-For": "1", "X-Forwarded-Host": "h", "Forwarded": "for=1", "Via": "v",
           "Outlay-Sim-Fault": "error-500", "X-Outlay-Approval": "apr", "Authorization": "b",
           "Cookie": "c", "Connection": "x-hop", "X-Hop": "1", "Te": "trailers", "Host": "h"}


def sent(rules: dict[str, object], vendor: str, headers: dict[str, str]) -> set[str]:
    rule = rules[vendor]
    assert hasattr(rule, "forwarded")
    return set(rule.forwarded(CIMultiDict(headers)))


def test_a_built_in_vendor_gets_only_its_api_headers() -> None:
    rules = vendor_headers({"stripe": {"forward_headers": ["X-Trace"]}}, BUILTIN,
                           frozenset(BUILTIN))
    asked = {**HOSTILE, "Stripe-Account": "a", "Idempotency-Key": "i", "X-Trace": "t",
             "X-Other": "o", "Content-Type": "application/x-www-form-urlencoded"}
    assert sent(rules, "stripe", asked) == {"Stripe-Account", "Idempotency-Key", "X-Trace",
                                            "Content-Type"}
    assert sent(rules, "resend", asked) == {"Idempotency-Key", "Content-Type"}


def test_a_configured_vendor_gets_all_but_the_never_forwarded() -> None:
    rules = vendor_headers({"acme": {"base_url": "http://x", "secret": "s"}}, BUILTIN,
                           frozenset({"acme"}))
    assert sent(rules, "acme", {**HOSTILE, "X-Acme": "1"}) == {"X-Acme"}


def test_only_the_in_process_simulator_is_sent_the_fault_header() -> None:
    simulated = vendor_headers({}, BUILTIN, frozenset())
    assert sent(simulated, "stripe", HOSTILE) == {"Outlay-Sim-Fault"}
    real = vendor_headers({}, BUILTIN, frozenset({"stripe"}))
    assert sent(real, "stripe", HOSTILE) == set()


@pytest.mark.parametrize(("section", "words"), [
    ({"forward_headers": ["X-Forwarded-For"]}, "forward_headers[0]"),
    ({"forward_headers": ["Outlay-Sim-Fault"]}, "never forwarded"),
    ({"forward_headers": ["bad header"]}, "not a header name"),
    ({"forward_headers": "X-A"}, "expected a list"),
    ({"accounts": "all"}, "vendors.stripe.accounts"),
])
def test_a_bad_section_is_refused_naming_the_field(section: dict[str, object],
                                                   words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        vendor_headers({"stripe": section}, BUILTIN, frozenset())


def test_accounts_any_is_read() -> None:
    rules = vendor_headers({"stripe": {"accounts": "any"}}, BUILTIN, frozenset())
    assert rules["stripe"].any_account
    assert not rules["twilio"].any_account
