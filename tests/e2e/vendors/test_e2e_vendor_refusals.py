"""What never reaches a vendor: bodies whose cost cannot be read, and vendors outside the agent's
allow-list; and how vendor failures settle (SPEC §3): a 4xx voids, a 5xx charges in full."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from ..harness import Gateway, micros, unique
from .conftest import MockVendors

pytestmark = pytest.mark.e2e

INTENTS = "/vendors/stripe/v1/payment_intents"
MESSAGES = "/vendors/twilio/2010-04-01/Accounts/ACagent/Messages.json"
FORM = "application/x-www-form-urlencoded"


def refusal_of(answer: httpx.Response) -> dict[str, Any]:
    """The error object of a vendor route's refusal, in whichever vendor's shape (§4.3.1):
    Stripe's (and any other vendor's) under `error`, Twilio's and Resend's the body itself."""
    body: dict[str, Any] = answer.json()
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def _email(n: int) -> dict[str, str]:
    return {"from": "shop@example.com", "to": f"r{n}@example.com", "subject": "s", "text": "t"}


# (vendor path, content type, body, the param named in the refusal)
MALFORMED: dict[str, tuple[str, str, bytes, str | None]] = {
    "stripe-missing-amount": (INTENTS, FORM, b"currency=usd", "amount"),
    "stripe-negative-amount": (INTENTS, FORM, b"amount=-2000&currency=usd", "amount"),
    "stripe-unknown-currency": (INTENTS, FORM, b"amount=2000&currency=xyz", "currency"),
    "stripe-amount-twice": (INTENTS, FORM, b"amount=1&amount=900000&currency=usd", "amount"),
    # A batch too long is the body as a whole: no one field to name.
    "resend-batch-of-101": ("/vendors/resend/emails/batch", "application/json",
                            json.dumps([_email(n) for n in range(101)]).encode(), None),
    "resend-without-to": ("/vendors/resend/emails", "application/json",
                          json.dumps({"from": "a@example.com", "subject": "s"}).encode(), "to"),
    "twilio-without-to": (MESSAGES, FORM, b"From=%2B15017122661&Body=hello", "To"),
}


@pytest.fixture
def agent(vendor_gateway: Gateway) -> tuple[str, str]:
    """A fresh agent with a $10 hard cap and a key of it."""
    name = unique("vendor-refusals")
    vendor_gateway.set_policy(f"agent:{name}", {"budgets": [
        {"usd": 10, "period": "total", "mode": "hard"}]})
    return name, vendor_gateway.mint_key(name)["key"]


@pytest.fixture
def http(vendor_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vendor_gateway.url, timeout=15) as client:
        yield client


def spent_and_reserved(gateway: Gateway, agent: str) -> tuple[int, int]:
    budget = gateway.budget(f"agent:{agent}", "total")
    return micros(budget["spent_usd"]), micros(budget["reserved_usd"])


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_body_whose_cost_cannot_be_read_is_refused_before_the_vendor(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client,
        agent: tuple[str, str], case: str) -> None:
    name, key = agent
    path, content_type, body, param = MALFORMED[case]
    mark = mock_vendors.mark()

    answer = http.post(path, content=body, headers={
        "Authorization": f"Bearer {key}", "Content-Type": content_type})

    assert answer.status_code == 400, answer.text
    error = refusal_of(answer)
    assert error["code"] == "invalid_request"
    assert error["param"] == param
    assert mock_vendors.since(mark) == []
    assert spent_and_reserved(vendor_gateway, name) == (0, 0)
    (entry,) = vendor_gateway.audit(f"agent:{name}")
    assert (entry["status"], entry["code"]) == (400, "invalid_request")


def test_twilio_without_to_is_refused_under_basic_auth_too(
        mock_vendors: MockVendors, http: httpx.Client, agent: tuple[str, str]) -> None:
    _, key = agent
    mark = mock_vendors.mark()

    answer = http.post(MESSAGES, data={"From": "+15017122661", "Body": "hi"},
                       auth=("ACagent", key))

    assert answer.status_code == 400
    assert (refusal_of(answer)["code"], refusal_of(answer)["param"]) == ("invalid_request", "To")
    assert mock_vendors.since(mark) == []


def _not_allowed_agent(gateway: Gateway) -> tuple[str, str]:
    name = unique("openai-only")
    gateway.set_policy(f"agent:{name}", {"vendors": ["openai"], "budgets": [
        {"usd": 100, "period": "total", "mode": "hard"}]})
    return name, gateway.mint_key(name)["key"]


CALLS: dict[str, dict[str, Any]] = {
    "stripe": {"url": INTENTS, "data": {"amount": "2000", "currency": "usd"}},
    "stripe-read": {"url": "/vendors/stripe/v1/customers", "method": "GET"},
    "twilio": {"url": MESSAGES, "data": {"To": "+14155550100", "From": "+15017122661",
                                         "Body": "hi"}},
    "resend": {"url": "/vendors/resend/emails", "json": _email(1)},
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_vendor_outside_the_allow_list_is_refused_and_never_reached(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client,
        call: str) -> None:
    name, key = _not_allowed_agent(vendor_gateway)
    spec = dict(CALLS[call])
    mark = mock_vendors.mark()

    answer = http.request(spec.pop("method", "POST"), spec.pop("url"), **spec,
                          headers={"Authorization": f"Bearer {key}"})

    # Stripe's SDK reads a 403 as a PermissionError without its code: Stripe gets a 400
    assert answer.status_code == (400 if call.startswith("stripe") else 403), answer.text
    error = refusal_of(answer)
    assert error["code"] == "vendor_not_allowed"
    assert error["allowed"] == ["openai"]
    assert mock_vendors.since(mark) == []
    assert spent_and_reserved(vendor_gateway, name) == (0, 0)


def test_a_retry_of_a_call_outside_the_allow_list_is_refused_again(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client) -> None:
    """The refusal must not register the Idempotency-Key: the retry would pass as a replay
    of a payment that was never made, and reach Stripe unchecked."""
    _, key = _not_allowed_agent(vendor_gateway)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"k-{uuid.uuid4()}"}
    mark = mock_vendors.mark()

    statuses = [http.post(INTENTS, data={"amount": "2000", "currency": "usd"},
                          headers=headers).status_code for _ in range(2)]

    assert statuses == [400, 400]  # Stripe's shape of a permission refusal
    assert mock_vendors.since(mark) == []


# --- settlement of vendor failures --------------------------------------------------------


@pytest.fixture
def stripe_sdk(vendor_gateway: Gateway,
               agent: tuple[str, str]) -> Iterator[stripe.StripeClient]:
    http = stripe.RequestsClient()
    yield stripe.StripeClient(api_key=agent[1], http_client=http, max_network_retries=0,
                              base_addresses={"api": f"{vendor_gateway.url}/vendors/stripe"})
    http.close()


def test_a_declined_card_is_the_vendors_402_and_costs_nothing(
        vendor_gateway: Gateway, mock_vendors: MockVendors, agent: tuple[str, str],
        stripe_sdk: stripe.StripeClient) -> None:
    mark = mock_vendors.mark()

    with pytest.raises(stripe.CardError) as declined:
        stripe_sdk.v1.payment_intents.create(params={
            "amount": 900, "currency": "usd", "payment_method": "pm_card_chargeDeclined",
            "confirm": True})

    assert declined.value.http_status == 402
    assert declined.value.code == "card_declined"  # Stripe's, not Outlay's budget_exceeded
    assert len(mock_vendors.since(mark, "stripe")) == 1
    assert spent_and_reserved(vendor_gateway, agent[0]) == (0, 0)


@pytest.mark.parametrize(("fault", "charged"), [("error-400", 0), ("error-409", 0),
                                                ("error-500", 9_000_000),
                                                ("error-503", 9_000_000)])
def test_a_vendor_error_voids_a_4xx_and_charges_a_5xx_in_full(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client,
        agent: tuple[str, str], fault: str, charged: int) -> None:
    name, key = agent
    mark = mock_vendors.mark()

    with mock_vendors.faulty(fault):  # the agent's own header never reaches the vendor
        answer = http.post(INTENTS, data={"amount": "900", "currency": "usd"},
                           headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == int(fault.removeprefix("error-"))
    assert len(mock_vendors.since(mark, "stripe")) == 1
    assert spent_and_reserved(vendor_gateway, name) == (charged, 0)
    (entry,) = vendor_gateway.audit(f"agent:{name}")
    assert entry["settlement"] == ("void" if charged == 0 else "unsettled")
