"""The official `stripe` SDK pointed at a real gateway whose Stripe is a counting mock: hard caps
hold, the gateway's secret replaces the agent's key, retries with one Idempotency-Key are
charged once, zero-decimal currencies are converted, and reads cost nothing."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe
import yaml

from ..harness import Gateway, micros, unique
from .conftest import STRIPE_SECRET, MockVendors

pytestmark = pytest.mark.e2e

INTENTS = "/v1/payment_intents"
USD_20 = {"amount": 2000, "currency": "usd"}


@pytest.fixture
def stripe_http() -> Iterator[stripe.HTTPClient]:
    """The SDK's blocking client, closed after the test (warnings are errors)."""
    http = stripe.RequestsClient()
    yield http
    http.close()


def client(gateway: Gateway, key: str, http: stripe.HTTPClient) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=key,
        base_addresses={"api": f"{gateway.url}/vendors/stripe"},
        http_client=http,
        max_network_retries=0,
    )


def agent_with_cap(gateway: Gateway, prefix: str, usd: int | str,
                   period: str = "total") -> tuple[str, str]:
    """A fresh agent under a hard cap, and a key of it."""
    agent = unique(prefix)
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": usd, "period": period, "mode": "hard"}]})
    return agent, gateway.mint_key(agent)["key"]


def spent(gateway: Gateway, agent: str, period: str = "total") -> int:
    return micros(gateway.budget(f"agent:{agent}", period)["spent_usd"])


def fx(code: str) -> tuple[Fraction, int]:
    """The shipped USD rate of a currency and its decimals in Stripe amounts."""
    shipped: dict[str, Any] = yaml.safe_load(
        files("outlay.vendors").joinpath("fx.yaml").read_text("utf-8"))
    decimals = 0 if code in shipped["zero_decimal"] else 3 if code in shipped[
        "three_decimal"] else 2
    return Fraction(Decimal(str(shipped["rates"][code]))), decimals


@pytest.mark.parametrize("period", ["total", "day"])
def test_hard_cap_admits_two_20_dollar_intents_and_refuses_the_third(
        vendor_gateway: Gateway, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient,
        period: str) -> None:
    agent, key = agent_with_cap(vendor_gateway, "stripe-cap", 50, period)
    sdk = client(vendor_gateway, key, stripe_http)
    mark = mock_vendors.mark()

    first = sdk.v1.payment_intents.create(params=USD_20)
    second = sdk.v1.payment_intents.create(params=USD_20)
    assert first.id != second.id
    assert (first.amount, first.currency) == (2000, "usd")
    with pytest.raises(stripe.StripeError) as refused:
        sdk.v1.payment_intents.create(params=USD_20)

    # never 402, which stripe-python reads as a declined card: a Stripe-shaped 400
    assert isinstance(refused.value, stripe.InvalidRequestError)
    assert not isinstance(refused.value, stripe.CardError)
    assert refused.value.http_status == 400
    assert refused.value.code == "budget_exceeded"
    assert refused.value.headers is not None
    assert refused.value.headers.get("x-should-retry") == "false"
    assert refused.value.headers.get("stripe-should-retry") == "false"
    body = refused.value.json_body
    assert body is not None
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "budget_exceeded"
    assert micros(body["error"]["cap_usd"]) == 50_000_000
    created = mock_vendors.creations(mark, "stripe", INTENTS)
    assert len(created) == 2
    assert spent(vendor_gateway, agent, period) == 40_000_000


def test_the_vendor_sees_the_gateway_secret_never_the_outlay_key(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    _, key = agent_with_cap(vendor_gateway, "stripe-secret", 10)
    sdk = client(vendor_gateway, key, stripe_http)
    mark = mock_vendors.mark()

    sdk.v1.payment_intents.create(params={"amount": 150, "currency": "usd"})
    sdk.v1.customers.list(params={"limit": 3})

    seen = mock_vendors.since(mark, "stripe")
    assert [(c.method, c.path) for c in seen] == [("POST", INTENTS), ("GET", "/v1/customers")]
    for call in seen:
        assert call.authorization == f"Bearer {STRIPE_SECRET}"
        flat = repr(call.headers) + call.body.decode() + call.query
        assert key not in flat
        assert "olk_" not in flat


def test_a_retry_with_the_same_idempotency_key_is_charged_once(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    agent, key = agent_with_cap(vendor_gateway, "stripe-idem", 50)
    sdk = client(vendor_gateway, key, stripe_http)
    idem = f"order-{uuid.uuid4()}"
    mark = mock_vendors.mark()

    first = sdk.v1.payment_intents.create(params=USD_20, options={"idempotency_key": idem})
    assert spent(vendor_gateway, agent) == 20_000_000
    again = sdk.v1.payment_intents.create(params=USD_20, options={"idempotency_key": idem})

    assert again.id == first.id  # the vendor replayed its answer
    assert spent(vendor_gateway, agent) == 20_000_000
    sent = mock_vendors.creations(mark, "stripe", INTENTS)
    assert [c.headers.get("idempotency-key") for c in sent] == [idem, idem]
    entries = vendor_gateway.audit(f"agent:{agent}")
    replays = [e for e in entries if e["code"] == "idempotent_replay"]
    assert len(replays) == 1
    assert Decimal(replays[0]["reserved_usd"]) == 0
    assert Decimal(replays[0]["cost_usd"]) == 0
    charged = [e for e in entries if e["settlement"] == "settled" and e["code"] is None]
    assert [micros(e["cost_usd"]) for e in charged] == [20_000_000]


def test_the_sdk_does_not_retry_a_budget_refusal(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    """A refusal is final: the SDK's own retries do not repeat it."""
    agent, key = agent_with_cap(vendor_gateway, "stripe-no-retry", 10)
    sdk = stripe.StripeClient(api_key=key, http_client=stripe_http, max_network_retries=3,
                              base_addresses={"api": f"{vendor_gateway.url}/vendors/stripe"})
    mark = mock_vendors.mark()

    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.payment_intents.create(params=USD_20)

    assert refused.value.http_status == 400
    assert not isinstance(refused.value, stripe.CardError)
    assert mock_vendors.since(mark) == []
    assert [e["code"] for e in vendor_gateway.audit(f"agent:{agent}")] == ["budget_exceeded"]


def test_a_retry_of_a_refused_payment_is_refused_again(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    """A refusal never reached Stripe, so a retry with its Idempotency-Key is a new payment and
    must face the budget again, not pass as a free replay of a call that was never made."""
    agent, key = agent_with_cap(vendor_gateway, "stripe-idem-refused", 30)
    sdk = client(vendor_gateway, key, stripe_http)
    sdk.v1.payment_intents.create(params=USD_20)
    mark = mock_vendors.mark()
    idem = f"order-{uuid.uuid4()}"

    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            sdk.v1.payment_intents.create(params=USD_20, options={"idempotency_key": idem})
        assert (refused.value.http_status, refused.value.code) == (400, "budget_exceeded")

    assert mock_vendors.creations(mark, "stripe", INTENTS) == []
    assert spent(vendor_gateway, agent) == 20_000_000


def test_a_zero_decimal_currency_is_converted_with_the_fx_table(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    agent, key = agent_with_cap(vendor_gateway, "stripe-jpy", 100)
    sdk = client(vendor_gateway, key, stripe_http)
    rate, decimals = fx("jpy")
    assert decimals == 0

    intent = sdk.v1.payment_intents.create(params={"amount": 3333, "currency": "jpy"})

    assert (intent.amount, intent.currency) == (3333, "jpy")
    expected = math.ceil(3333 * rate * 1_000_000)  # exact, rounded up once
    assert spent(vendor_gateway, agent) == expected == 22_331_100  # 3333 JPY x 0.0067
    entry = vendor_gateway.audit(f"agent:{agent}", limit=1)[0]
    assert entry["vendor"] == "stripe"
    assert micros(entry["cost_usd"]) == micros(entry["reserved_usd"]) == expected


def test_reads_and_lists_cost_nothing(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    agent, key = agent_with_cap(vendor_gateway, "stripe-free", "0.000001")
    sdk = client(vendor_gateway, key, stripe_http)
    mark = mock_vendors.mark()

    customer = sdk.v1.customers.create(params={"email": "ada@example.com"})
    page = sdk.v1.customers.list(params={"limit": 100})
    fetched = sdk.v1.customers.retrieve(customer.id)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.payment_intents.retrieve("pi_missing")
    assert missing.value.http_status == 404

    assert fetched.id == customer.id
    assert customer.id in [c.id for c in page.data]
    seen = mock_vendors.since(mark, "stripe")
    assert [(c.method, c.path.split("/")[2]) for c in seen] == [
        ("POST", "customers"), ("GET", "customers"), ("GET", "customers"),
        ("GET", "payment_intents")]
    budget = vendor_gateway.budget(f"agent:{agent}", "total")
    assert micros(budget["spent_usd"]) == micros(budget["reserved_usd"]) == 0


@pytest.mark.parametrize("email", ["ada+shop@example.com", "ada#shop@example.com",
                                   "ada%shop@example.com"])
def test_list_filters_reach_the_vendor_as_the_sdk_encoded_them(
        vendor_gateway: Gateway, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient,
        email: str) -> None:
    """The query is forwarded as sent: decoding it first turns `%23` into a fragment that cuts
    the query short, and `%25` into a stray escape."""
    _, key = agent_with_cap(vendor_gateway, "stripe-query", 1)
    sdk = client(vendor_gateway, key, stripe_http)
    customer = sdk.v1.customers.create(params={"email": email})
    mark = mock_vendors.mark()

    page = sdk.v1.customers.list(params={"email": email, "limit": 10})

    (listed,) = mock_vendors.since(mark, "stripe")
    assert parse_qs(listed.query) == {"email": [email], "limit": ["10"]}
    assert [c.id for c in page.data] == [customer.id]


def test_an_object_id_reaches_the_vendor_as_the_sdk_encoded_it(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    """The path is forwarded as sent: a decoded `%3F` would end it and start a query."""
    _, key = agent_with_cap(vendor_gateway, "stripe-path", 1)
    sdk = client(vendor_gateway, key, stripe_http)
    mark = mock_vendors.mark()

    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.customers.retrieve("cus_a?b#c")

    assert missing.value.http_status == 404
    (fetched,) = mock_vendors.since(mark, "stripe")
    assert (fetched.path, fetched.query) == ("/v1/customers/cus_a%3Fb%23c", "")
