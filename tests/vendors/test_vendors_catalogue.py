"""The shipped catalogue: every endpoint it prices is priced by its vendor's own pricing, every
endpoint it frees moves no money, and anything else has no price."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from outlay.vendors import BUILTIN_VENDORS, VendorCall, pricing_for
from outlay.vendors.catalogue import catalogue, find, parse

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SID = "/2010-04-01/Accounts/AC123"

# one call for each priced endpoint of the catalogue, in its order
PRICED: dict[str, list[tuple[str, str, bytes]]] = {
    "stripe": [
        ("/v1/payment_intents", FORM, b"amount=100&currency=usd"),
        ("/v1/payment_intents/pi_1", FORM, b"amount=100"),
        ("/v1/payment_intents/pi_1/confirm", FORM, b""),
        ("/v1/charges", FORM, b"amount=100&currency=usd&source=tok_visa"),
        ("/v1/charges/ch_1", FORM, b"description=x"),
        ("/v1/charges/ch_1/capture", FORM, b""),
        ("/v1/refunds", FORM, b"charge=ch_1&amount=100"),
        ("/v1/transfers", FORM, b"amount=100&currency=usd&destination=acct_1"),
        ("/v1/payouts", FORM, b"amount=100&currency=usd"),
    ],
    "twilio": [
        (f"{SID}/Messages.json", FORM, b"To=%2B14155550100&Body=hi"),
        (f"{SID}/Messages", FORM, b"To=%2B14155550100&Body=hi"),
        (f"{SID}/Messages.xml", FORM, b"To=%2B14155550100&Body=hi"),
        (f"{SID}/Calls.json", FORM, b"To=%2B14155550100&From=%2B15017122661&Url=x"),
        (f"{SID}/Calls", FORM, b"To=%2B14155550100&From=%2B15017122661&Url=x"),
        (f"{SID}/IncomingPhoneNumbers.json", FORM, b"PhoneNumber=%2B14155550100"),
        (f"{SID}/IncomingPhoneNumbers", FORM, b"AreaCode=415"),
    ],
    "resend": [
        ("/emails", JSON, b'{"from": "a@b.c", "to": "d@e.f"}'),
        ("/emails/batch", JSON, b'[{"from": "a@b.c", "to": "d@e.f"}]'),
        ("/broadcasts", JSON, b'{"segment_id": "s", "from": "a@b.c", "send": true}'),
    ],
}


def call(vendor: str, method: str, path: str, content_type: str = FORM,
         body: bytes = b"") -> VendorCall:
    return VendorCall(vendor, method, path, content_type, body, {})


@pytest.mark.parametrize("vendor", BUILTIN_VENDORS)
def test_every_priced_endpoint_is_priced_by_its_vendor(vendor: str) -> None:
    pricing = pricing_for(vendor, {})
    priced = [e for e in catalogue()[vendor] if e.how is not None]
    assert len(priced) == len(PRICED[vendor])
    for endpoint, (path, content_type, body) in zip(priced, PRICED[vendor], strict=True):
        request = call(vendor, endpoint.method, path, content_type, body)
        assert find(catalogue()[vendor], request) == endpoint
        if pricing.object_call(request) is None:  # priced, or named as having no price
            assert pricing.estimate(request).cost_micros != 0, (vendor, path)


@pytest.mark.parametrize(
    ("vendor", "method", "path"),
    [
        ("stripe", "GET", "/v1/payment_intents/pi_1"),
        ("stripe", "GET", "/v1/anything/at/all"),
        ("stripe", "POST", "/v1/customers"),
        ("stripe", "DELETE", "/v1/customers/cus_1"),
        ("stripe", "POST", "/v1/setup_intents/seti_1/confirm"),
        ("stripe", "POST", "/v1/payment_methods/pm_1/attach"),
        ("stripe", "POST", "/v1/refunds/re_1/cancel"),
        ("stripe", "POST", "/v1/products"),
        ("stripe", "POST", "/v1/prices"),
        ("twilio", "GET", f"{SID}/Calls.json"),
        ("twilio", "POST", f"{SID}/Messages/SM1.json"),
        ("twilio", "DELETE", f"{SID}/IncomingPhoneNumbers/PN1.json"),
        ("resend", "GET", "/emails/e_1"),
        ("resend", "POST", "/segments"),
        ("resend", "POST", "/audiences/a_1/contacts"),
        ("resend", "POST", "/emails/e_1/cancel"),
    ],
)
def test_what_moves_no_money_is_free(vendor: str, method: str, path: str) -> None:
    pricing = pricing_for(vendor, {})
    request = call(vendor, method, path)
    assert pricing.object_call(request) is None
    assert pricing.estimate(request).cost_micros == 0


@pytest.mark.parametrize(
    ("vendor", "method", "path"),
    [
        ("stripe", "POST", "/v1/invoices/in_1/pay"),
        ("stripe", "POST", "/v1/invoices"),
        ("stripe", "POST", "/v1/transfers/tr_1/reversals"),
        ("stripe", "POST", "/v1/payouts/po_1/reverse"),
        ("stripe", "POST", "/v1/subscriptions"),
        ("stripe", "POST", "/v1/checkout/sessions"),
        ("stripe", "PUT", "/v1/customers/cus_1"),
        ("stripe", "POST", "/v1/customers/..%2Finvoices"),
        ("twilio", "POST", f"{SID}/Calls/CA1.json"),
        ("twilio", "POST", f"{SID}/Conferences.json"),
        ("twilio", "POST", "/v1/Services"),
        ("resend", "POST", "/broadcasts/b_1/send"),
        ("resend", "PUT", "/emails"),
    ],
)
def test_anything_else_has_no_price(vendor: str, method: str, path: str) -> None:
    pricing = pricing_for(vendor, {})
    request = call(vendor, method, path)
    assert pricing.object_call(request) is None
    estimate = pricing.estimate(request)
    assert estimate.cost_micros is None
    assert estimate.describe.endswith("no price known")


def test_a_disguised_path_is_the_endpoint_it_reaches() -> None:
    pricing = pricing_for("stripe", {})
    request = call("stripe", "POST", "/v1/customers/..%2Fpayment_intents", FORM,
                   b"amount=100&currency=usd")
    created = pricing.object_call(request)
    assert created is not None
    assert created.action == "create"


def test_a_path_with_a_newline_is_still_matched() -> None:
    request = call("stripe", "GET", "/v1/customers%0Afake")
    assert pricing_for("stripe", {}).estimate(request).cost_micros == 0


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], "expected a mapping of vendors"),
        ({"x": []}, r"x: expected `priced` and `free`"),
        ({"x": {"paid": []}}, r"x: expected `priced` and `free`"),
        ({"x": {"free": ["GET /"]}}, r"free\[0\]: expected a mapping"),
        ({"x": {"free": [{"method": "get", "path": "/"}]}}, r"\.method"),
        ({"x": {"free": [{"method": "GET", "path": "x"}]}}, r"\.path"),
        ({"x": {"free": [{"method": "GET", "path": "/", "how": "y"}]}}, "free one does not"),
        ({"x": {"priced": [{"method": "GET", "path": "/"}]}}, "priced endpoint says"),
    ],
)
def test_a_bad_catalogue_is_refused(raw: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse(raw, "catalogue")


def test_the_contract_lists_the_catalogue_as_shipped() -> None:
    """docs/contract.md §3.8 holds every endpoint of catalogue.yaml, in its order."""
    contract = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
    rows = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
        r"^\| `(\w+)` \| (.*) \| (.*) \|$", contract.split("### 3.8", 1)[1].split("\n## ")[0],
        re.MULTILINE)}
    assert set(rows) == set(catalogue())
    for vendor, endpoints in catalogue().items():
        priced, free = (re.findall(r"`([A-Z]+ [^`]+)`", cell) for cell in rows[vendor])
        assert priced == [f"{e.method} {e.path}" for e in endpoints if e.how], vendor
        assert free == [f"{e.method} {e.path}" for e in endpoints if not e.how], vendor
