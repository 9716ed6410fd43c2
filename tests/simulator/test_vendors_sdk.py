"""The official stripe, twilio and resend SDKs against the simulated vendors, on loopback.

A tiny aiohttp server hands every call to SimulatedVendors, so each SDK parses exactly the
bytes the gateway would relay. The SDKs' async clients run in the test's own loop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import resend
import resend.exceptions
import stripe
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from stripe.params import PaymentIntentCreateParams
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client as TwilioClient  # type: ignore[import-untyped]

from outlay.simulator.vendors import SimulatedVendors
from outlay.upstream import UpstreamRequest

TWILIO_SID = "AC" + "a" * 32

# Deprecations inside the SDKs' own HTTP code, not ours to fix: stripe hands httpx raw bytes
# as data=, twilio hands aiohttp its BasicAuth.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]


@dataclass
class Vendors:
    sim: SimulatedVendors
    base_url: str


@pytest.fixture
async def vendors(aiohttp_server: AiohttpServer) -> Vendors:
    """A loopback server at ``{base_url}/{vendor}/…`` answering from SimulatedVendors."""
    sim = SimulatedVendors()

    async def relay(request: web.Request) -> web.Response:
        vendor = request.match_info["vendor"]
        call = UpstreamRequest(
            provider=vendor,
            method=request.method,
            path=request.rel_url.raw_path.removeprefix(f"/{vendor}"),
            headers=dict(request.headers),
            body=await request.read(),
            stream=False,
            query=request.rel_url.raw_query_string,
        )
        answer = await sim.send(call)
        try:
            body = await answer.read()
        finally:
            await answer.close()
        return web.Response(status=answer.status, body=body, headers=answer.headers)

    app = web.Application()
    app.router.add_route("*", "/{vendor}/{tail:.*}", relay)
    server = await aiohttp_server(app)
    return Vendors(sim, f"http://127.0.0.1:{server.port}")


@pytest.fixture
async def stripe_client(vendors: Vendors) -> AsyncIterator[stripe.StripeClient]:
    http = stripe.HTTPXClient()
    yield stripe.StripeClient(
        "sk_test_agent",
        base_addresses={"api": vendors.base_url + "/stripe"},
        http_client=http,
        max_network_retries=0,
    )
    await http.close_async()  # type: ignore[no-untyped-call]


@pytest.fixture
async def twilio_client(vendors: Vendors) -> AsyncIterator[TwilioClient]:
    http = AsyncTwilioHttpClient()
    client = TwilioClient(TWILIO_SID, "agent-token", http_client=http)
    client.api.base_url = vendors.base_url + "/twilio"
    yield client
    await http.close()


@pytest.fixture
def resend_api(vendors: Vendors, monkeypatch: pytest.MonkeyPatch) -> None:
    # The resend SDK is configured through module globals only.
    monkeypatch.setattr(resend, "api_key", "re_agent")
    monkeypatch.setattr(resend, "api_url", vendors.base_url + "/resend")


# --- stripe ------------------------------------------------------------------------------


async def test_stripe_payment_intent_round_trip(
    stripe_client: stripe.StripeClient, vendors: Vendors
) -> None:
    created = await stripe_client.v1.payment_intents.create_async(
        params={"amount": 2000, "currency": "USD", "metadata": {"order": "42"}}
    )
    assert isinstance(created, stripe.PaymentIntent)
    assert created.id.startswith("pi_")
    assert (created.amount, created.currency) == (2000, "usd")
    assert created.status == "requires_payment_method"
    assert created.metadata.to_dict() == {"order": "42"}
    fetched = await stripe_client.v1.payment_intents.retrieve_async(created.id)
    assert fetched.id == created.id
    assert vendors.sim.received == [
        ("stripe", "POST", "/v1/payment_intents"),
        ("stripe", "GET", f"/v1/payment_intents/{created.id}"),
    ]


async def test_stripe_confirmed_intent_succeeds_with_a_charge(
    stripe_client: stripe.StripeClient,
) -> None:
    intent = await stripe_client.v1.payment_intents.create_async(
        params={"amount": 500, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert intent.status == "succeeded"
    assert intent.amount_received == 500
    assert isinstance(intent.latest_charge, str)
    assert intent.latest_charge.startswith("ch_")


async def test_stripe_same_idempotency_key_returns_the_same_object(
    stripe_client: stripe.StripeClient, vendors: Vendors
) -> None:
    params: PaymentIntentCreateParams = {"amount": 1234, "currency": "usd"}
    first = await stripe_client.v1.payment_intents.create_async(
        params=params, options={"idempotency_key": "order-7"}
    )
    again = await stripe_client.v1.payment_intents.create_async(
        params=params, options={"idempotency_key": "order-7"}
    )
    other = await stripe_client.v1.payment_intents.create_async(
        params=params, options={"idempotency_key": "order-8"}
    )
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers["idempotent-replayed"] == "true"
    assert other.id != first.id
    # Each retry still reached the vendor; the vendor made one object of the first two.
    assert [call[2] for call in vendors.sim.received].count("/v1/payment_intents") == 3


async def test_stripe_reused_key_with_other_params_is_an_idempotency_error(
    stripe_client: stripe.StripeClient,
) -> None:
    await stripe_client.v1.payment_intents.create_async(
        params={"amount": 100, "currency": "usd"}, options={"idempotency_key": "k"}
    )
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        await stripe_client.v1.payment_intents.create_async(
            params={"amount": 999, "currency": "usd"}, options={"idempotency_key": "k"}
        )


async def test_stripe_validation_error_is_an_invalid_request_error(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.payment_intents.create_async(
            params={"currency": "usd"}  # type: ignore[typeddict-item]
        )
    assert caught.value.http_status == 400
    assert caught.value.param == "amount"
    assert caught.value.code == "parameter_missing"


async def test_stripe_declined_card_is_a_card_error(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as caught:
        await stripe_client.v1.charges.create_async(
            params={"amount": 500, "currency": "usd", "source": "tok_chargeDeclined"}
        )
    assert caught.value.http_status == 402
    assert caught.value.code == "card_declined"
    assert caught.value.error is not None
    assert caught.value.error.decline_code == "generic_decline"


async def test_stripe_charge_and_customers(stripe_client: stripe.StripeClient) -> None:
    customer = await stripe_client.v1.customers.create_async(
        params={"email": "ada@example.com", "name": "Ada"}
    )
    assert isinstance(customer, stripe.Customer)
    charge = await stripe_client.v1.charges.create_async(
        params={"amount": 700, "currency": "usd", "customer": customer.id}
    )
    assert isinstance(charge, stripe.Charge)
    assert charge.id.startswith("ch_")
    assert (charge.status, charge.paid, charge.customer) == ("succeeded", True, customer.id)
    await stripe_client.v1.customers.create_async(params={"email": "bob@example.com"})
    page = await stripe_client.v1.customers.list_async(params={"limit": 1})
    assert [c.email for c in page.data] == ["bob@example.com"]
    assert page.has_more
    everyone = await stripe_client.v1.customers.list_async()
    assert [c.email for c in everyone.data] == ["bob@example.com", "ada@example.com"]


async def test_stripe_unknown_object_is_resource_missing(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.payment_intents.retrieve_async("pi_nope")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"


# --- twilio ------------------------------------------------------------------------------


async def test_twilio_message_round_trip(twilio_client: TwilioClient, vendors: Vendors) -> None:
    sent = await twilio_client.messages.create_async(
        to="+15558675310", from_="+15017122661", body="Your order shipped", max_price="0.05"
    )
    assert sent.sid is not None
    assert sent.sid.startswith("SM")
    assert len(sent.sid) == 34
    assert (sent.status, sent.num_segments, sent.price, sent.price_unit) == (
        "queued",
        "1",
        None,
        "USD",
    )
    assert sent.account_sid == TWILIO_SID
    assert sent.date_created is not None
    fetched = await twilio_client.messages(sent.sid).fetch_async()
    assert fetched.body == "Your order shipped"
    listed = await twilio_client.messages.list_async()
    assert [m.sid for m in listed] == [sent.sid]
    assert vendors.sim.received[0] == (
        "twilio",
        "POST",
        f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
    )
    assert b"MaxPrice=0.05" in vendors.sim.requests[0].body


async def test_twilio_long_unicode_body_counts_ucs2_segments(twilio_client: TwilioClient) -> None:
    sent = await twilio_client.messages.create_async(
        to="+15558675310", from_="+15017122661", body="🙂" * 70
    )
    assert sent.num_segments == "3"  # 140 UTF-16 units, 67 to a segment


@pytest.mark.parametrize(
    ("to", "code"), [("+15005550001", 21211), ("+15005550009", 21614), ("12", 21211)]
)
async def test_twilio_errors_are_rest_exceptions(
    twilio_client: TwilioClient, to: str, code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await twilio_client.messages.create_async(to=to, from_="+15017122661", body="x")
    assert caught.value.status == 400
    assert caught.value.code == code


# --- resend ------------------------------------------------------------------------------


@pytest.mark.usefixtures("resend_api")
async def test_resend_send_batch_and_get(vendors: Vendors) -> None:
    sent = await resend.Emails.send_async(
        {
            "from": "Shop <shop@example.com>",
            "to": ["ada@example.com", "bob@example.com"],
            "subject": "Receipt",
            "html": "<p>Thanks</p>",
        }
    )
    uuid.UUID(sent["id"])
    batch = await resend.Batch.send_async(
        [
            {"from": "shop@example.com", "to": "a@example.com", "subject": "1", "text": "x"},
            {"from": "shop@example.com", "to": "b@example.com", "subject": "2", "text": "y"},
        ]
    )
    assert len(batch["data"]) == 2
    email = await resend.Emails.get_async(sent["id"])
    assert email["to"] == ["ada@example.com", "bob@example.com"]
    assert email["subject"] == "Receipt"
    assert [call[2] for call in vendors.sim.received] == [
        "/emails",
        "/emails/batch",
        f"/emails/{sent['id']}",
    ]


@pytest.mark.usefixtures("resend_api")
async def test_resend_errors_are_sdk_exceptions() -> None:
    with pytest.raises(resend.exceptions.MissingRequiredFieldsError):
        await resend.Emails.send_async(
            {"from": "shop@example.com", "subject": "s", "text": "x"}  # type: ignore[typeddict-item]
        )
    with pytest.raises(resend.exceptions.ValidationError):
        await resend.Emails.send_async(
            {"from": "shop@example.com", "to": "not-an-address", "subject": "s", "text": "x"}
        )
    with pytest.raises(resend.exceptions.ResendError) as caught:
        await resend.Emails.get_async("00000000-0000-0000-0000-000000000000")
    assert caught.value.code == 404
