"""Every vendor call is priced, known to move no money, or refused under a hard budget: an
endpoint outside a vendor's catalogue is 400 `price_unknown` before anything is forwarded,
forwarded and marked `unpriced` in the audit when no hard budget applies, and a vendor
section's `rules` price or free any endpoint first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import resend
import resend.exceptions

from ..harness import Gateway, micros, unique
from .conftest import TWILIO_SID, MockVendors, running, vendor_config

pytestmark = pytest.mark.e2e

BROADCAST = "/vendors/resend/broadcasts/b_123/send"
CONFERENCE = f"/vendors/twilio/2010-04-01/Accounts/{TWILIO_SID}/Conferences.json"


def refusal_of(answer: httpx.Response) -> dict[str, Any]:
    """The error object of a vendor route's refusal, in whichever vendor's shape (§4.3.1):
    Stripe's (and any other vendor's) under `error`, Twilio's and Resend's the body itself."""
    body: dict[str, Any] = answer.json()
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


@pytest.fixture(scope="module")
def ruled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          mock_vendors: MockVendors) -> Iterator[Gateway]:
    """A gateway whose Resend prices a broadcast send and which knows a vendor of its own."""
    doc = vendor_config(mock_vendors)
    doc["vendors"]["resend"]["rules"] = [
        {"method": "POST", "path": "/broadcasts/*/send", "usd": "0.50"}]
    doc["vendors"]["acme"] = {"base_url": mock_vendors.base_url("acme"), "secret": "acme-key",
                              "rules": [{"method": "GET", "path": "/**", "usd": 0},
                                        {"method": "POST", "path": "/v1/jobs", "usd": 1}]}
    directory = tmp_path_factory.mktemp("ruled") / "gw"
    with running(request.config, directory, doc, workers=1) as gw:
        yield gw


def agent(gateway: Gateway, mode: str | None = "hard") -> tuple[str, str]:
    name = unique("unknown-price")
    if mode is not None:
        gateway.set_policy(f"agent:{name}", {"budgets": [
            {"usd": 10, "period": "total", "mode": mode}]})
    return name, gateway.mint_key(name)["key"]


def send(gateway: Gateway, key: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"},
                      timeout=15, **kwargs)


@pytest.mark.parametrize(
    ("path", "vendor", "method", "vendor_path", "form"),
    [
        (CONFERENCE, "twilio", "POST", f"/2010-04-01/Accounts/{TWILIO_SID}/Conferences.json",
         {"FriendlyName": "x"}),
        (BROADCAST, "resend", "POST", "/broadcasts/b_123/send", None),
        ("/vendors/stripe/v1/invoices/in_1/pay", "stripe", "POST", "/v1/invoices/in_1/pay",
         {}),
    ],
    ids=["twilio-unknown", "resend-broadcast", "stripe-invoice-pay"])
def test_an_unknown_endpoint_under_a_hard_budget_is_refused_unseen(
        vendor_gateway: Gateway, mock_vendors: MockVendors, path: str, vendor: str,
        method: str, vendor_path: str, form: dict[str, str] | None) -> None:
    name, key = agent(vendor_gateway)
    mark = mock_vendors.mark()

    answer = send(vendor_gateway, key, path, data=form, json=None if form is not None else {})

    assert answer.status_code == 400, answer.text
    error = refusal_of(answer)
    assert error["code"] == "price_unknown"
    assert (error["vendor"], error["method"], error["path"]) == (vendor, method, vendor_path)
    assert f"vendors.{vendor}.rules" in error["message"]
    assert mock_vendors.since(mark) == []
    (entry,) = vendor_gateway.audit(f"agent:{name}")
    assert (entry["decision"], entry["code"], entry["status"]) == (
        "refused", "price_unknown", 400)


def test_an_unknown_endpoint_under_a_money_out_cap_alone_is_refused_unseen(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    """Stripe endpoints Outlay has no price for may move money out (a Treasury outbound
    payment, a refund of an application fee): a money-out cap refuses them too."""
    name = unique("unknown-price")
    vendor_gateway.set_policy(f"agent:{name}", {"budgets": [
        {"usd": 50, "period": "day", "flow": "out"}]})
    key = vendor_gateway.mint_key(name)["key"]
    mark = mock_vendors.mark()
    for path in ("/v1/treasury/outbound_payments", "/v1/application_fees/fee_1/refunds"):
        answer = send(vendor_gateway, key, f"/vendors/stripe{path}",
                      data={"amount": "100000", "currency": "usd"})
        assert answer.status_code == 400, answer.text
        assert (refusal_of(answer)["code"], refusal_of(answer)["path"]) == ("price_unknown", path)
    assert mock_vendors.since(mark) == []


@pytest.mark.parametrize("mode", [None, "soft"])
def test_without_a_hard_budget_it_is_forwarded_and_marked_unpriced(
        vendor_gateway: Gateway, mock_vendors: MockVendors, mode: str | None) -> None:
    name, key = agent(vendor_gateway, mode)
    mark = mock_vendors.mark()

    answer = send(vendor_gateway, key, BROADCAST, json={})

    assert "x-outlay-cost-usd" not in answer.headers
    assert [(c.method, c.path) for c in mock_vendors.since(mark)] == [
        ("POST", "/broadcasts/b_123/send")]
    (entry,) = vendor_gateway.audit(f"agent:{name}")
    assert (entry["decision"], entry["code"], micros(entry["reserved_usd"])) == (
        "allowed", "unpriced", 0)


def draft(monkeypatch: pytest.MonkeyPatch, gateway: Gateway, key: str) -> str:
    """A draft broadcast to a new segment, made through the gateway with the resend SDK (both
    free under a hard budget: they send nothing)."""
    monkeypatch.setattr(resend, "api_key", key)
    monkeypatch.setattr(resend, "api_url", f"{gateway.url}/vendors/resend")
    segment = resend.Segments.create({"name": "Customers"})
    made = resend.Broadcasts.create({"segment_id": segment["id"], "from": "shop@example.com",
                                     "subject": "Sale", "html": "<p>20% off</p>"})
    return str(made["id"])


def test_a_broadcast_send_under_a_hard_budget_has_no_price(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        monkeypatch: pytest.MonkeyPatch) -> None:
    name, key = agent(vendor_gateway)
    broadcast = draft(monkeypatch, vendor_gateway, key)
    mark = mock_vendors.mark()

    with pytest.raises(resend.exceptions.ResendError) as refused:
        resend.Broadcasts.send({"broadcast_id": broadcast})
    with pytest.raises(resend.exceptions.ResendError) as at_once:
        resend.Broadcasts.create({"segment_id": "s", "from": "shop@example.com",
                                  "subject": "Now", "send": True})

    # the SDK shows Outlay's status, not its message (contract §4.3); the audit says why
    assert (refused.value.code, at_once.value.code) == (400, 400)
    assert mock_vendors.since(mark) == []
    codes = [(e["decision"], e["code"]) for e in vendor_gateway.audit(f"agent:{name}")]
    assert codes[:2] == [("refused", "price_unknown")] * 2


def test_a_rule_prices_a_broadcast_send(
        ruled: Gateway, mock_vendors: MockVendors, monkeypatch: pytest.MonkeyPatch) -> None:
    name, key = agent(ruled)
    broadcast = draft(monkeypatch, ruled, key)
    mark = mock_vendors.mark()

    sent = resend.Broadcasts.send({"broadcast_id": broadcast})

    assert sent["id"] == broadcast
    assert len(mock_vendors.since(mark)) == 1
    entry = ruled.audit(f"agent:{name}")[0]
    assert (entry["code"], micros(entry["cost_usd"])) == (None, 500_000)


def test_a_configured_vendor_prices_frees_or_refuses(
        ruled: Gateway, mock_vendors: MockVendors) -> None:
    name, key = agent(ruled)
    mark = mock_vendors.mark()

    unknown = send(ruled, key, "/vendors/acme/v1/other", json={})
    free = httpx.get(f"{ruled.url}/vendors/acme/v1/jobs", timeout=15,
                     headers={"Authorization": f"Bearer {key}"})

    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "price_unknown"
    assert [(c.vendor, c.method, c.path) for c in mock_vendors.since(mark)] == [
        ("acme", "GET", "/v1/jobs")]
    codes = [(e["decision"], e["code"]) for e in ruled.audit(f"agent:{name}")]
    assert codes[-1] == ("refused", "price_unknown")
    assert free.headers.get("x-outlay-reserved-usd") is None
