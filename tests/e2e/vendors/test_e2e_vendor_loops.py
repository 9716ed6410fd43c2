"""The loop guard on a vendor route, through the official `stripe` SDK: the same payment
intent created over and over (a new Idempotency-Key each time, as a retry loop around the
SDK makes them) is admitted `max_repeats` times, then refused as Stripe's RateLimitError
with code loop_detected and never reaches Stripe; the SDK's own retry of an admitted call
(its Idempotency-Key again) is a replay, not a repeat; another amount passes; a
form-encoded body compares by its fields, in any order."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import stripe

from ..harness import Gateway, unique
from .conftest import MockVendors

pytestmark = pytest.mark.e2e

INTENTS = "/v1/payment_intents"
USD_20 = {"amount": 2000, "currency": "usd"}
REPEATS = 3


@pytest.fixture
def stripe_http() -> Iterator[stripe.HTTPClient]:
    http = stripe.RequestsClient()
    yield http
    http.close()


def test_a_charge_loop_is_refused_in_stripes_shape(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        stripe_http: stripe.HTTPClient) -> None:
    agent = unique("stripe-loop")
    vendor_gateway.set_policy(f"agent:{agent}", {
        "budgets": [{"usd": 1000, "period": "total", "mode": "hard"}],
        "loop_guard": {"max_repeats": REPEATS, "window_s": 600}})
    key = vendor_gateway.mint_key(agent)["key"]
    sdk = stripe.StripeClient(api_key=key, http_client=stripe_http, max_network_retries=0,
                              base_addresses={"api": f"{vendor_gateway.url}/vendors/stripe"})
    mark = mock_vendors.mark()
    made = [sdk.v1.payment_intents.create(params=USD_20, options={
        "idempotency_key": f"{agent}-{n}"}) for n in range(REPEATS)]
    with pytest.raises(stripe.RateLimitError) as refused:
        sdk.v1.payment_intents.create(params=USD_20,
                                      options={"idempotency_key": f"{agent}-new"})
    assert refused.value.http_status == 429  # RateLimitError keeps no code: the body has it
    assert refused.value.headers is not None
    assert refused.value.headers.get("stripe-should-retry") == "false"
    assert int(refused.value.headers["retry-after"]) >= 1
    body = refused.value.json_body
    assert body is not None
    assert body["error"]["code"] == "loop_detected"
    assert (body["error"]["repeats"], body["error"]["window_s"]) == (REPEATS, 600)
    assert len(mock_vendors.creations(mark, "stripe", INTENTS)) == REPEATS

    # the SDK's retry of the first call: a replay, answered as Stripe answers it
    again = sdk.v1.payment_intents.create(params=USD_20,
                                          options={"idempotency_key": f"{agent}-0"})
    assert again.id == made[0].id
    other = sdk.v1.payment_intents.create(params={**USD_20, "amount": 2001},
                                          options={"idempotency_key": f"{agent}-other"})
    assert other.amount == 2001

    # the same fields in another order, sent by hand, are the same request
    answer = httpx.post(f"{vendor_gateway.url}/vendors/stripe{INTENTS}",
                        content=b"currency=usd&amount=2000", timeout=10, headers={
                            "Authorization": f"Bearer {key}",
                            "Content-Type": "application/x-www-form-urlencoded",
                            "Idempotency-Key": f"{agent}-by-hand"})
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "loop_detected"
