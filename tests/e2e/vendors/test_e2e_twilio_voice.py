"""Twilio calls and numbers through the official `twilio` SDK and a real gateway: a call that
names no TimeLimit reaches Twilio with one the budget can pay for, a call not even a minute
of which fits is refused unseen, and buying a number reserves its first month."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client as TwilioClient  # type: ignore[import-untyped]

from ..harness import Gateway, micros, unique
from .conftest import MockVendors

pytestmark = pytest.mark.e2e

US_MINUTE = 14_000  # micro-USD, the shipped price of a minute to a US number
FROM = "+15017122661"


@pytest.fixture
def http() -> Iterator[TwilioHttpClient]:
    client = TwilioHttpClient()
    yield client
    if client.session is not None:
        client.session.close()


def twilio(gateway: Gateway, key: str, http: TwilioHttpClient) -> TwilioClient:
    client = TwilioClient(username="ACagent", password=key, http_client=http)
    client.api.base_url = f"{gateway.url}/vendors/twilio"
    return client


def with_left(gateway: Gateway, left_micros: int) -> tuple[str, str]:
    """An agent under a $5 hard cap with `left_micros` of it left."""
    agent = unique("voice")
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 5, "period": "total", "mode": "hard"}]})
    key = gateway.mint_key(agent)["key"]
    spend = 5_000_000 - left_micros
    if spend:  # spent exactly, through Stripe: a payment of `spend` / 10^4 cents
        assert spend % 10_000 == 0
        answer = httpx.post(f"{gateway.url}/vendors/stripe/v1/payment_intents",
                            data={"amount": str(spend // 10_000), "currency": "usd"},
                            headers={"Authorization": f"Bearer {key}"}, timeout=15)
        assert answer.status_code == 200, answer.text
    return agent, key


def spent(gateway: Gateway, agent: str) -> int:
    return micros(gateway.budget(f"agent:{agent}", "total")["spent_usd"])


def test_a_call_without_a_time_limit_is_sent_with_one_that_fits(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: TwilioHttpClient) -> None:
    agent, key = with_left(vendor_gateway, 1_000_000)  # $1 left: 71 minutes to the US
    mark = mock_vendors.mark()

    call = twilio(vendor_gateway, key, http).calls.create(
        to="+14155550100", from_=FROM, url="https://example.com/twiml")

    assert call.status == "queued"
    (sent,) = mock_vendors.creations(mark, "twilio", "/Calls.json")
    assert sent.form()["TimeLimit"] == [str(71 * 60)]
    assert spent(vendor_gateway, agent) == 4_000_000 + 71 * US_MINUTE
    entry = vendor_gateway.audit(f"agent:{agent}", limit=1)[0]
    assert (entry["route"], micros(entry["cost_usd"])) == ("vendor.twilio", 71 * US_MINUTE)


def test_a_call_that_fits_keeps_its_own_time_limit(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: TwilioHttpClient) -> None:
    agent, key = with_left(vendor_gateway, 1_000_000)
    mark = mock_vendors.mark()
    twilio(vendor_gateway, key, http).calls.create(
        to="+14155550100", from_=FROM, url="https://example.com/twiml", time_limit=90)
    (sent,) = mock_vendors.creations(mark, "twilio", "/Calls.json")
    assert parse_qs(sent.body.decode())["TimeLimit"] == ["90"]
    assert spent(vendor_gateway, agent) == 4_000_000 + 2 * US_MINUTE


def test_a_call_not_a_minute_of_which_fits_is_refused_unseen(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: TwilioHttpClient) -> None:
    agent, key = with_left(vendor_gateway, 10_000)  # a cent: less than a minute
    mark = mock_vendors.mark()
    with pytest.raises(TwilioRestException) as refused:
        twilio(vendor_gateway, key, http).calls.create(
            to="+14155550100", from_=FROM, url="https://example.com/twiml")
    assert refused.value.status == 402
    assert mock_vendors.since(mark) == []
    assert spent(vendor_gateway, agent) == 4_990_000


def test_buying_a_number_reserves_its_first_month(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: TwilioHttpClient) -> None:
    agent, key = with_left(vendor_gateway, 5_000_000)
    client = twilio(vendor_gateway, key, http)

    number = client.incoming_phone_numbers.create(phone_number="+14155550177")

    assert number.phone_number == "+14155550177"
    assert spent(vendor_gateway, agent) == 1_150_000
    toll_free = client.incoming_phone_numbers.create(area_code="888")  # $2.15 of $3.85 left
    assert toll_free.phone_number.startswith("+1888")
    with pytest.raises(TwilioRestException) as refused:
        client.incoming_phone_numbers.create(area_code="888")
    assert refused.value.status == 402
    assert spent(vendor_gateway, agent) == 1_150_000 + 2_150_000
