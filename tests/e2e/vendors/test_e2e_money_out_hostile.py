"""An agent trying to move money past a money-out cap (`flow: out`) through a real
`outlay serve --workers 2` in front of a counting mock Stripe: a refund naming a cheaper
currency than its charge's, money out under spend caps alone, Stripe's older refund routes,
a payment intent refunded twice; and Stripe is never read for a call the policies refuse."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from ..harness import Gateway, micros, unique
from .conftest import MockVendors
from .test_e2e_money_out import client

pytestmark = pytest.mark.e2e


def refund(gateway: Gateway, key: str, path: str = "/v1/refunds",
           headers: dict[str, str] | None = None, **form: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/vendors/stripe{path}", data=form, timeout=30,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})})


def agent_capped(gateway: Gateway, policy: dict[str, Any]) -> tuple[str, str]:
    agent = unique("hostile")
    gateway.set_policy(f"agent:{agent}", policy)
    return agent, gateway.mint_key(agent)["key"]


def out_cap(usd: int) -> dict[str, Any]:
    return {"budgets": [{"usd": usd, "period": "day", "flow": "out"}]}


def error_of(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 400, answer.text  # Stripe-shaped (contract §4.3.1)
    error: dict[str, Any] = answer.json()["error"]
    return error


@pytest.fixture(params=["vendor_gateway", "redis_gateway"], ids=["sqlite", "redis"])
def any_gateway(request: pytest.FixtureRequest) -> Gateway:
    """The package's gateway on SQLite, then the one on Redis beside PostgreSQL."""
    gateway: Gateway = request.getfixturevalue(request.param)
    return gateway


def refusals_counted(gateway: Gateway, code: str, within_s: float = 5.0) -> bool:
    """Whether /metrics counts refusals of `code` on Stripe within `within_s` (each worker
    leaves its counts for the others every second)."""
    deadline = time.monotonic() + within_s
    while True:
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        if any(f'code="{code}"' in line and 'vendor="stripe"' in line
               for line in text.splitlines() if not line.startswith("#")):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_a_refund_naming_a_cheap_currency_is_counted_in_its_charges(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    """Stripe refunds a charge in the charge's currency: ¥7,000 named on a USD charge would
    move $70, past a $50 cap, though ¥7,000 is worth $47."""
    agent, key = agent_capped(vendor_gateway, out_cap(50))
    charge = mock_vendors.made_elsewhere("/v1/charges", amount="10000", currency="usd",
                                         source="tok_visa")["id"]
    mark = mock_vendors.mark()
    with pytest.raises(stripe.StripeError) as caught:
        client(vendor_gateway.url, key).v1.refunds.create(params={
            "charge": charge, "amount": 7000, "currency": "jpy"})
    error: dict[str, Any] = caught.value.json_body["error"]  # type: ignore[index]
    assert (caught.value.http_status, error["code"], error["flow"]) == (
        400, "budget_exceeded", "out")
    assert [(c.method, c.path) for c in mock_vendors.since(mark, "stripe")] == [
        ("GET", f"/v1/charges/{charge}")]  # read, never refunded

    admitted = refund(vendor_gateway, key, charge=charge, amount="3000", currency="jpy")
    assert admitted.status_code == 200, admitted.text
    assert (admitted.json()["amount"], admitted.json()["currency"]) == (3000, "usd")
    assert admitted.headers["X-Outlay-Reserved-USD"] == "30"
    assert admitted.headers["X-Outlay-Cost-USD"] == "30"
    again = refund(vendor_gateway, key, charge=charge, amount="3000", currency="jpy")
    assert error_of(again)["code"] == "budget_exceeded"
    line = vendor_gateway.budget(f"agent:{agent}")
    assert (micros(line["spent_usd"]), micros(line["reserved_usd"])) == (30_000_000, 0)
    assert len(mock_vendors.creations(mark, "stripe", "/v1/refunds")) == 1


def test_money_out_under_spend_caps_alone_is_refused_until_money_out_is_capped(
        any_gateway: Gateway, mock_vendors: MockVendors) -> None:
    vendor_gateway = any_gateway
    agent, key = agent_capped(vendor_gateway, {"budgets": [{"usd": 20, "period": "day"}]})
    charge = mock_vendors.made_elsewhere("/v1/charges", amount="500", currency="usd",
                                         source="tok_visa")["id"]
    stripe_ = client(vendor_gateway.url, key)
    mark = mock_vendors.mark()
    refusals = []
    for create, params in (
            (stripe_.v1.refunds.create, {"charge": charge}),
            (stripe_.v1.refunds.create, {"charge": charge, "amount": 100}),
            (stripe_.v1.transfers.create, {"amount": 100, "currency": "usd",
                                           "destination": "acct_1"}),
            (stripe_.v1.payouts.create, {"amount": 100, "currency": "usd"})):
        with pytest.raises(stripe.StripeError) as caught:
            create(params=params)  # type: ignore[operator]
        refusals.append(caught.value)
    assert mock_vendors.since(mark, "stripe") == []  # not even a read of the charge
    for refused in refusals:
        assert refused.http_status == 400
        body: dict[str, Any] = refused.json_body["error"]  # type: ignore[index]
        assert (body["code"], body["outlay_type"], body["scope"], body["flow"]) == (
            "money_out_not_capped", "permission_error", f"agent:{agent}", "out")
        assert "flow: out" in body["message"]
    assert {r["code"] for r in vendor_gateway.audit(f"agent:{agent}")} == {
        "money_out_not_capped"}
    assert refusals_counted(vendor_gateway, "money_out_not_capped")
    # payments still go through, and a money-out budget beside the spend one lets money out
    assert stripe_.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    vendor_gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 20, "period": "day"}, {"usd": 5, "period": "day", "flow": "out"}]})
    assert stripe_.v1.payouts.create(params={"amount": 100, "currency": "usd"}).amount == 100


def test_money_out_with_no_hard_budget_goes_on_and_is_counted(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    agent, key = agent_capped(vendor_gateway, {"budgets": [
        {"usd": 1, "period": "day", "mode": "soft"}]})
    mark = mock_vendors.mark()
    payout = client(vendor_gateway.url, key).v1.payouts.create(
        params={"amount": 250, "currency": "usd"})
    assert payout.amount == 250
    assert len(mock_vendors.creations(mark, "stripe", "/v1/payouts")) == 1
    report = vendor_gateway.admin.get("/admin/v1/reports", params={"group_by": "agent"})
    (line,) = [r for r in report.json()["rows"] if r["agent"] == agent]
    assert line["out_usd"] == "2.5"


def test_the_older_refund_routes_settle_at_what_stripe_refunded(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    agent, key = agent_capped(vendor_gateway, out_cap(20))
    charge = mock_vendors.made_elsewhere("/v1/charges", amount="1200", currency="usd",
                                         source="tok_visa")["id"]
    mark = mock_vendors.mark()
    part = refund(vendor_gateway, key, f"/v1/charges/{charge}/refunds", amount="400",
                  currency="jpy")
    assert part.status_code == 200, part.text
    assert (part.json()["object"], part.headers["X-Outlay-Cost-USD"]) == ("refund", "4")
    # the older route answers with the charge: what it refunded more than before the call
    rest = refund(vendor_gateway, key, f"/v1/charges/{charge}/refund")
    assert rest.status_code == 200, rest.text
    assert (rest.json()["object"], rest.json()["amount_refunded"]) == ("charge", 1200)
    assert (rest.headers["X-Outlay-Reserved-USD"], rest.headers["X-Outlay-Cost-USD"]) == (
        "8", "8")
    nothing_left = refund(vendor_gateway, key, f"/v1/charges/{charge}/refund", amount="1")
    assert nothing_left.json()["error"]["code"] == "charge_already_refunded"  # Stripe's
    line = vendor_gateway.budget(f"agent:{agent}")
    assert (micros(line["spent_usd"]), micros(line["reserved_usd"])) == (12_000_000, 0)
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in mock_vendors.since(
        mark, "stripe")] == [("GET", charge), ("POST", "refunds"), ("GET", charge),
                             ("POST", "refund"), ("GET", charge), ("POST", "refund")]


def test_a_payment_intent_refunded_twice_reserves_only_what_is_left(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    """$9 received, $2.50 refunded: the whole remainder is $6.50, which fits a $10 cap
    beside the first refund (reserving the $9 received would not)."""
    agent, key = agent_capped(vendor_gateway, out_cap(10))
    intent = mock_vendors.made_elsewhere("/v1/payment_intents", amount="900", currency="usd",
                                         payment_method="pm_card_visa", confirm="true")["id"]
    stripe_ = client(vendor_gateway.url, key)
    mark = mock_vendors.mark()
    assert stripe_.v1.refunds.create(params={"payment_intent": intent, "amount": 250}
                                     ).amount == 250
    whole = stripe_.v1.refunds.create(params={"payment_intent": intent})
    assert whole.amount == 650
    reads = [c for c in mock_vendors.since(mark, "stripe") if c.method == "GET"]
    assert [(c.path, c.query) for c in reads] == [
        (f"/v1/payment_intents/{intent}", "expand%5B%5D=latest_charge")] * 2
    line = vendor_gateway.budget(f"agent:{agent}")
    assert (micros(line["spent_usd"]), micros(line["reserved_usd"])) == (9_000_000, 0)
    costs = sorted(micros(r["cost_usd"]) for r in vendor_gateway.audit(f"agent:{agent}"))
    assert costs == [2_500_000, 6_500_000]


def test_stripe_is_never_read_for_a_refund_the_policies_refuse(
        any_gateway: Gateway, mock_vendors: MockVendors) -> None:
    """The read before a refund uses the gateway's credential: a refund that a `tag:<n>=*`
    policy's operations, a tag a policy requires, or a connected account no policy lists
    refuse must not reach Stripe at all."""
    vendor_gateway = any_gateway
    tag = unique("cust").replace("-", "_")
    vendor_gateway.set_policy(f"tag:{tag}=*", {
        "operations": {"stripe": ["POST /v1/payment_intents"]}})
    _, key = agent_capped(vendor_gateway, {**out_cap(50), "required_tags": ["order"]})
    charge = mock_vendors.made_elsewhere("/v1/charges", amount="500", currency="usd",
                                         source="tok_visa")["id"]
    mark = mock_vendors.mark()
    by_tag = refund(vendor_gateway, key, headers={"X-Outlay-Tags": f"order=1,{tag}=acme"},
                    charge=charge)
    assert (error_of(by_tag)["code"], error_of(by_tag)["scope"]) == (
        "operation_not_allowed", f"tag:{tag}=acme")
    untagged = refund(vendor_gateway, key, charge=charge)
    assert error_of(untagged)["code"] == "missing_tag"
    elsewhere = refund(vendor_gateway, key, charge=charge,
                       headers={"X-Outlay-Tags": "order=1", "Stripe-Account": "acct_OTHER"})
    assert error_of(elsewhere)["code"] == "account_not_allowed"
    assert mock_vendors.since(mark, "stripe") == []
    # the same refund that the policies allow is read, then made
    allowed = refund(vendor_gateway, key, headers={"X-Outlay-Tags": "order=1"}, charge=charge)
    assert allowed.status_code == 200, allowed.text
    assert [c.method for c in mock_vendors.since(mark, "stripe")] == ["GET", "POST"]
