"""Least privilege on vendor APIs through a real `outlay serve --workers 2` whose vendors are
a counting mock: the operations a scope may call (the official `stripe` SDK), the connected
accounts it may name, the countries and recipients it may reach (the `twilio` and `resend`
SDKs), which of the agent's headers reach the vendor, and bad policies refused whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import resend
import resend.exceptions
import stripe
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]

import outlay

from ..harness import Gateway, unique
from ..replicas import Replica
from ..traffic import wait_until
from .conftest import MockVendors
from .test_e2e_twilio_resend_sdk import point_resend, twilio

pytestmark = pytest.mark.e2e

PAYMENT_INTENTS_ONLY = {"operations": {"stripe": ["POST /v1/payment_intents"]}}


def stripe_refusal_status() -> int:
    """What a permission refusal on a Stripe route answers with: 400, as stripe-python's
    InvalidRequestError keeps the code (its PermissionError drops it; contract §4.3.1)."""
    return 400


@pytest.fixture
def stripe_http() -> Iterator[stripe.HTTPClient]:
    http = stripe.RequestsClient()
    yield http
    http.close()


@pytest.fixture
def twilio_http() -> Iterator[TwilioHttpClient]:
    http = TwilioHttpClient()
    yield http
    if http.session is not None:
        http.session.close()


def stripe_client(gateway: Gateway, key: str, http: stripe.HTTPClient) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=key, http_client=http, max_network_retries=0,
                               base_addresses={"api": f"{gateway.url}/vendors/stripe"})


def agent_with(gateway: Gateway, policy: dict[str, Any]) -> tuple[str, str]:
    agent = unique("least")
    gateway.set_policy(f"agent:{agent}", policy)
    return agent, gateway.mint_key(agent)["key"]


def refused(error: stripe.StripeError, code: str) -> dict[str, Any]:
    """The refusal's error object, after checking its status and code."""
    assert error.http_status == stripe_refusal_status()
    body = error.json_body
    assert isinstance(body, dict)
    detail: dict[str, Any] = body["error"]
    assert detail["code"] == code
    return detail


def test_an_agent_allowed_only_payment_intents_may_not_refund_or_pay_out(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    agent, key = agent_with(vendor_gateway, PAYMENT_INTENTS_ONLY)
    client = stripe_client(vendor_gateway, key, stripe_http)
    mark = mock_vendors.mark()

    with pytest.raises(stripe.StripeError) as refund:
        client.v1.refunds.create(params={"charge": "ch_123", "amount": 500})
    with pytest.raises(stripe.StripeError) as payout:
        client.v1.payouts.create(params={"amount": 10_000, "currency": "usd"})

    assert mock_vendors.since(mark, "stripe") == []
    detail = refused(refund.value, "operation_not_allowed")
    assert (detail["vendor"], detail["method"], detail["path"]) == ("stripe", "POST",
                                                                    "/v1/refunds")
    assert detail["allowed"] == ["POST /v1/payment_intents"]
    assert refused(payout.value, "operation_not_allowed")["path"] == "/v1/payouts"
    typed = outlay.error_from(refund.value)  # the Python SDK's reading of stripe's error
    assert isinstance(typed, outlay.OperationNotAllowed)
    assert isinstance(typed, outlay.NotAllowed)
    assert (typed.vendor, typed.method, typed.path, typed.allowed) == (
        "stripe", "POST", "/v1/refunds", ["POST /v1/payment_intents"])
    # nothing reserved: the refusals are in the ledger, charged nothing
    rows = vendor_gateway.audit(f"agent:{agent}")
    assert [(r["code"], r["cost_usd"]) for r in rows] == [("operation_not_allowed", "0")] * 2

    intent = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})
    assert intent.amount == 700
    assert len(mock_vendors.since(mark, "stripe")) == 1
    # a path spelt another way is still the path the vendor acts on
    answer = httpx.post(f"{vendor_gateway.url}/vendors/stripe/v1/payment_intents/../refunds",
                        data={"charge": "ch_1"}, headers={"Authorization": f"Bearer {key}"})
    assert answer.json()["error"]["code"] == "operation_not_allowed"
    assert len(mock_vendors.since(mark, "stripe")) == 1


def test_every_scope_listing_the_vendor_must_allow_the_call(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    group = unique("team")
    vendor_gateway.set_policy(f"group:{group}", {"operations": {"stripe": ["* /v1/**"]}})
    agent = unique("least")
    vendor_gateway.set_policy(f"agent:{agent}", {"operations": {"stripe": ["GET /v1/**"]}})
    key = vendor_gateway.admin.post("/admin/v1/keys", json={
        "agent": agent, "labels": {"group": group}}).json()["key"]
    mark = mock_vendors.mark()
    with pytest.raises(stripe.StripeError) as error:
        stripe_client(vendor_gateway, key, stripe_http).v1.payment_intents.create(
            params={"amount": 100, "currency": "usd"})
    assert refused(error.value, "operation_not_allowed")["scope"] == f"agent:{agent}"
    assert mock_vendors.since(mark) == []


def test_a_connected_account_must_be_listed(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    _, unlisted_key = agent_with(vendor_gateway, {})
    _, listed_key = agent_with(vendor_gateway, {"accounts": {"stripe": ["acct_1Nabc"]}})
    mark = mock_vendors.mark()

    with pytest.raises(stripe.StripeError) as nobody:
        stripe_client(vendor_gateway, unlisted_key, stripe_http).v1.payment_intents.create(
            params={"amount": 100, "currency": "usd"},
            options={"stripe_account": "acct_1Nabc"})
    listed = stripe_client(vendor_gateway, listed_key, stripe_http)
    with pytest.raises(stripe.StripeError) as other:
        listed.v1.payment_intents.create(params={"amount": 100, "currency": "usd"},
                                      options={"stripe_account": "acct_OTHER"})
    context = httpx.post(f"{vendor_gateway.url}/vendors/stripe/v1/payment_intents",
                         data={"amount": "100", "currency": "usd"},
                         headers={"Authorization": f"Bearer {listed_key}",
                                  "Stripe-Context": "acct_OTHER"})
    assert mock_vendors.since(mark) == []
    assert refused(nobody.value, "account_not_allowed")["account"] == "acct_1Nabc"
    typed = outlay.error_from(other.value)
    assert isinstance(typed, outlay.AccountNotAllowed)
    assert typed.allowed == ["acct_1Nabc"]
    assert refused(other.value, "account_not_allowed")["allowed"] == ["acct_1Nabc"]
    assert context.json()["error"]["code"] == "account_not_allowed"
    for sent_twice in ([("Stripe-Account", "acct_OTHER"), ("Stripe-Account", "acct_1Nabc")],
                       [("Stripe-Account", "acct_1Nabc"), ("Stripe-Account", "acct_EVIL")]):
        twice = httpx.post(f"{vendor_gateway.url}/vendors/stripe/v1/payment_intents",
                           data={"amount": "100", "currency": "usd"},
                           headers=[("Authorization", f"Bearer {listed_key}"), *sent_twice])
        assert twice.json()["error"]["code"] == "account_not_allowed", twice.json()

    intent = listed.v1.payment_intents.create(params={"amount": 100, "currency": "usd"},
                                           options={"stripe_account": "acct_1Nabc"})
    assert intent.amount == 100
    (sent,) = mock_vendors.since(mark, "stripe")
    assert sent.headers["stripe-account"] == "acct_1Nabc"


def test_twilio_to_a_country_not_listed_is_refused(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        twilio_http: TwilioHttpClient) -> None:
    agent, key = agent_with(vendor_gateway, {"destinations": {"twilio": ["US", "CA"]}})
    client = twilio(vendor_gateway, key, twilio_http)
    mark = mock_vendors.mark()
    with pytest.raises(TwilioRestException) as error:
        client.messages.create(to="+447700900123", from_="+15005550006", body="hi")
    with pytest.raises(TwilioRestException) as call:
        client.calls.create(to="+33612345678", from_="+15005550006", url="https://x.test/t")
    raw = httpx.post(f"{vendor_gateway.url}/vendors/twilio/2010-04-01/Accounts/ACagent/"
                     "Messages.json", data={"To": "+61412345678", "From": "+1500", "Body": "x"},
                     auth=("ACagent", key))
    assert mock_vendors.since(mark) == []
    assert (error.value.status, call.value.status, raw.status_code) == (403, 403, 403)
    detail = raw.json()  # Twilio's error shape: the fields at the top (contract §4.3.1)
    assert (detail["code"], detail["destination"], detail["allowed"]) == (
        "destination_not_allowed", "AU", ["US", "CA"])
    typed = outlay.error_from(error.value)  # twilio's exception, read by the Python SDK
    assert isinstance(typed, outlay.DestinationNotAllowed)
    assert (typed.destination, typed.allowed) == ("GB", ["US", "CA"])
    assert [r["code"] for r in vendor_gateway.audit(f"agent:{agent}")] == [
        "destination_not_allowed"] * 3

    sent = client.messages.create(to="+14165550123", from_="+15005550006", body="hi")  # CA
    assert sent.sid
    assert len(mock_vendors.since(mark, "twilio")) == 1


def test_resend_to_a_recipient_not_matching_is_refused(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent, key = agent_with(vendor_gateway, {"destinations": {"resend": ["*@example.com"]}})
    point_resend(monkeypatch, vendor_gateway, key)
    mark = mock_vendors.mark()
    for params in ({"to": "a@example.com", "bcc": ["spy@evil.test"]},
                   {"to": ["a@example.com"], "cc": "Boss <boss@Evil.test>"},
                   {"to": "a@example.com.evil.test"}):
        with pytest.raises(resend.exceptions.ResendError) as error:
            resend.Emails.send({"from": "me@example.com", "subject": "s", "html": "x",
                                **params})  # type: ignore[typeddict-item]
        assert error.value.code == 403
        # resend-python keeps the code (as `error_type`) and the message, not the details
        typed = outlay.error_from(error.value)
        assert isinstance(typed, outlay.DestinationNotAllowed)
        assert typed.request_id is not None
        assert typed.request_id.startswith("req_")
    raw = httpx.post(f"{vendor_gateway.url}/vendors/resend/emails/batch", json=[
        {"from": "me@example.com", "to": "a@example.com", "subject": "s", "html": "x"},
        {"from": "me@example.com", "to": "x@other.test", "subject": "s", "html": "x"}],
        headers={"Authorization": f"Bearer {key}"})
    assert mock_vendors.since(mark) == []
    detail = raw.json()  # Resend's error shape: the fields at the top (contract §4.3.1)
    assert (raw.status_code, detail["code"], detail["destination"]) == (
        403, "destination_not_allowed", "x@other.test")
    assert [r["code"] for r in vendor_gateway.audit(f"agent:{agent}")] == [
        "destination_not_allowed"] * 4

    sent = resend.Emails.send({"from": "me@example.com", "subject": "s", "html": "x",
                               "to": "A <a@EXAMPLE.com>", "cc": ["b@example.com"]})
    assert sent["id"]
    assert len(mock_vendors.since(mark, "resend")) == 1


def test_the_vendor_never_sees_forwarding_or_outlay_headers(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    _, key = agent_with(vendor_gateway, {})
    charge = mock_vendors.made_elsewhere("/v1/charges", amount="500", currency="usd",
                                         source="tok_visa")["id"]
    mark = mock_vendors.mark()
    hostile = {"X-Forwarded-For": "10.0.0.1", "Forwarded": "for=10.0.0.1",
               "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "http",
               "Outlay-Sim-Fault": "error-500", "Outlay-Anything": "1",
               "X-Outlay-Whatever": "1", "X-Outlay-Tags": "team=a", "Via": "1.1 evil",
               "X-Custom-Thing": "1", "outlay-sim-latency-ms": "1", "x-forwarded-port": "1",
               "Connection": "keep-alive, X-Hop", "X-Hop": "1",
               "Idempotency-Key": unique("idem"), "Stripe-Version": "2024-06-20"}
    answer = httpx.post(f"{vendor_gateway.url}/vendors/stripe/v1/payment_intents",
                        data={"amount": "100", "currency": "usd"},
                        headers={"Authorization": f"Bearer {key}", **hostile})
    resend_answer = httpx.post(f"{vendor_gateway.url}/vendors/resend/emails", json={
        "from": "me@example.com", "to": "a@example.com", "subject": "s", "html": "x"},
        headers={"Authorization": f"Bearer {key}", **hostile})
    twilio_answer = httpx.post(
        f"{vendor_gateway.url}/vendors/twilio/2010-04-01/Accounts/ACagent/Messages.json",
        data={"To": "+14165550123", "From": "+15005550006", "Body": "hi"},
        auth=("ACagent", key), headers=hostile)
    # a refund: the read of its charge before it, and the refund, both go out
    refund_answer = httpx.post(f"{vendor_gateway.url}/vendors/stripe/v1/refunds",
                               data={"charge": charge, "amount": "100"},
                               headers={"Authorization": f"Bearer {key}", **hostile,
                                        "Idempotency-Key": unique("idem")})
    assert [a.status_code for a in (answer, resend_answer, twilio_answer, refund_answer)] == [
        200, 200, 201, 200]  # no fault injected
    sent = mock_vendors.since(mark)
    assert [(r.vendor, r.method) for r in sent] == [
        ("stripe", "POST"), ("resend", "POST"), ("twilio", "POST"), ("stripe", "GET"),
        ("stripe", "POST")]
    for received in sent:
        names = set(received.headers)
        assert not {n for n in names if n.startswith(("x-forwarded-", "outlay-", "x-outlay-"))}
        assert not names & {"forwarded", "via", "x-custom-thing", "x-hop"}
    assert sent[0].headers["stripe-version"] == "2024-06-20"
    assert sent[0].headers["idempotency-key"] == hostile["Idempotency-Key"]


@pytest.mark.parametrize(("policy", "field"), [
    ({"operations": {"stripe": ["/v1/refunds"]}}, "operations.stripe[0]"),
    ({"operations": {"stripe": ["POST /v1/***"]}}, "operations.stripe[0]"),
    ({"operations": {"stripe": ["POST v1/refunds"]}}, "operations.stripe[0]"),
    ({"operations": {"strype": ["POST /v1/refunds"]}}, "operations.strype"),
    ({"operations": ["POST /v1/refunds"]}, "operations"),
    ({"accounts": {"stripe": "acct_1"}}, "accounts.stripe"),
    ({"destinations": {"twilio": [""]}}, "destinations.twilio[0]"),
])
def test_a_bad_list_is_refused_naming_its_field_and_nothing_is_stored(
        vendor_gateway: Gateway, policy: dict[str, Any], field: str) -> None:
    scope = f"agent:{unique('bad')}"
    answer = vendor_gateway.admin.put(f"/admin/v1/policies/{scope}", json=policy)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_policy", field)
    assert field in error["message"]
    assert vendor_gateway.admin.get(f"/admin/v1/policies/{scope}").status_code == 404


def test_metrics_count_the_refusals_by_code(
        vendor_gateway: Gateway, stripe_http: stripe.HTTPClient) -> None:
    _, key = agent_with(vendor_gateway, PAYMENT_INTENTS_ONLY)
    with pytest.raises(stripe.StripeError):
        stripe_client(vendor_gateway, key, stripe_http).v1.payouts.create(
            params={"amount": 1, "currency": "usd"})

    def counted() -> bool:
        text = httpx.get(f"{vendor_gateway.url}/metrics", timeout=10).text
        return any('code="operation_not_allowed"' in line and 'vendor="stripe"' in line
                   for line in text.splitlines() if not line.startswith("#"))

    # the scrape may reach the other worker, which sees this one's counts as this one last
    # left them (every WRITE_S, a second)
    wait_until(counted, 5, "the refusal in /metrics")


def test_the_lists_hold_on_redis_and_postgresql(
        redis_gateway: Replica, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    agent, key = agent_with(redis_gateway, {
        **PAYMENT_INTENTS_ONLY, "accounts": {"stripe": ["acct_1Nabc"]}})
    client = stripe_client(redis_gateway, key, stripe_http)
    mark = mock_vendors.mark()
    with pytest.raises(stripe.StripeError) as refund:
        client.v1.refunds.create(params={"charge": "ch_1", "amount": 500})
    with pytest.raises(stripe.StripeError) as account:
        client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"},
                                         options={"stripe_account": "acct_OTHER"})
    assert mock_vendors.since(mark) == []
    refused(refund.value, "operation_not_allowed")
    refused(account.value, "account_not_allowed")
    intent = client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"},
                                              options={"stripe_account": "acct_1Nabc"})
    assert intent.amount == 100
    assert len(mock_vendors.since(mark, "stripe")) == 1
    codes = sorted(r["code"] or "" for r in redis_gateway.audit(f"agent:{agent}"))
    assert codes == ["", "account_not_allowed", "operation_not_allowed"]
