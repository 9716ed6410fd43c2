"""The official `twilio` and `resend` SDKs pointed at a real gateway whose vendors are a counting
mock: a UCS-2 message costs its segments x the price of the destination country and reaches
Twilio capped by MaxPrice under the gateway's account; an email costs the price x recipients,
and a batch counts every email."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from importlib.resources import files

import pytest
import resend
import resend.exceptions
import yaml
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client as TwilioClient  # type: ignore[import-untyped]

from outlay.vendors import sms_segments

from ..harness import Gateway, micros, unique
from .conftest import RESEND_KEY, TWILIO_SID, TWILIO_TOKEN, MockVendors

pytestmark = pytest.mark.e2e

# 69 UTF-16 units of text and one emoji of two: 70 fits one UCS-2 segment, 71 does not.
EMOJI_BODY = "Your parcel #4411 is out for delivery today between 10:00 and 12:00! " + "📦"
RESEND_PRICE = Decimal("0.0009")  # Resend's shipped price per email (vendors/resend.py)


def sms_price(country: str) -> Decimal:
    shipped = yaml.safe_load(
        files("outlay.vendors").joinpath("twilio_prices.yaml").read_text("utf-8"))
    return Decimal(str(shipped["sms"][country]))


def agent_key(gateway: Gateway, prefix: str, usd: int = 5) -> tuple[str, str]:
    agent = unique(prefix)
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": usd, "period": "total", "mode": "hard"}]})
    return agent, gateway.mint_key(agent)["key"]


def spent(gateway: Gateway, agent: str) -> int:
    return micros(gateway.budget(f"agent:{agent}", "total")["spent_usd"])


@pytest.fixture
def twilio_http() -> Iterator[TwilioHttpClient]:
    http = TwilioHttpClient()
    yield http
    if http.session is not None:
        http.session.close()


def twilio(gateway: Gateway, key: str, http: TwilioHttpClient) -> TwilioClient:
    """The agent's own SID as user name, its Outlay key as the password (SPEC §4)."""
    client = TwilioClient(username="ACagent", password=key, http_client=http)
    client.api.base_url = f"{gateway.url}/vendors/twilio"
    return client


def point_resend(monkeypatch: pytest.MonkeyPatch, gateway: Gateway, key: str) -> None:
    """The resend SDK is configured through module globals only; monkeypatch puts them back."""
    monkeypatch.setattr(resend, "api_key", key)
    monkeypatch.setattr(resend, "api_url", f"{gateway.url}/vendors/resend")


# --- twilio ------------------------------------------------------------------------------


def test_an_emoji_message_costs_its_ucs2_segments_at_the_destination_price(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        twilio_http: TwilioHttpClient) -> None:
    agent, key = agent_key(vendor_gateway, "twilio-ucs2")
    segments = sms_segments(EMOJI_BODY)
    assert (segments.encoding, segments.units, segments.count) == ("UCS-2", 71, 2)
    expected = int(segments.count * sms_price("GB") * 1_000_000)  # 2 x $0.0524, exact
    assert expected == 104_800
    mark = mock_vendors.mark()

    message = twilio(vendor_gateway, key, twilio_http).messages.create(
        to="+447700900123", from_="+15017122661", body=EMOJI_BODY)

    assert message.sid.startswith("SM")
    assert message.num_segments == "2"
    assert spent(vendor_gateway, agent) == expected
    (sent,) = mock_vendors.since(mark, "twilio")
    assert (sent.method, sent.path) == ("POST", f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    form = sent.form()
    assert form["Body"] == [EMOJI_BODY]
    assert form["To"] == ["+447700900123"]
    assert [Decimal(p) for p in form["MaxPrice"]] == [Decimal(expected) / 1_000_000]
    assert sent.basic_auth() == (TWILIO_SID, TWILIO_TOKEN)
    assert key not in repr(sent.headers) + sent.body.decode()
    (entry,) = [e for e in vendor_gateway.audit(f"agent:{agent}") if e["vendor"] == "twilio"]
    assert micros(entry["reserved_usd"]) == micros(entry["cost_usd"]) == expected


def test_the_agents_lower_max_price_is_kept(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        twilio_http: TwilioHttpClient) -> None:
    agent, key = agent_key(vendor_gateway, "twilio-maxprice")
    mark = mock_vendors.mark()

    twilio(vendor_gateway, key, twilio_http).messages.create(
        to="+14155550100", from_="+15017122661", body="Plain GSM text", max_price="0.005")

    (sent,) = mock_vendors.since(mark, "twilio")
    assert sent.form()["MaxPrice"] == ["0.005"]
    assert spent(vendor_gateway, agent) == int(sms_price("US") * 1_000_000)


# --- resend ------------------------------------------------------------------------------


def test_an_email_costs_the_price_times_its_recipients(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent, key = agent_key(vendor_gateway, "resend-email")
    point_resend(monkeypatch, vendor_gateway, key)
    mark = mock_vendors.mark()

    sent = resend.Emails.send({
        "from": "Shop <shop@example.com>",
        "to": ["ada@example.com", "bob@example.com"],
        "cc": ["carol@example.com"],
        "subject": "Receipt",
        "text": "Thanks",
    })

    assert sent["id"]
    assert spent(vendor_gateway, agent) == int(3 * RESEND_PRICE * 1_000_000) == 2_700
    (call,) = mock_vendors.since(mark, "resend")
    assert (call.method, call.path) == ("POST", "/emails")
    assert call.authorization == f"Bearer {RESEND_KEY}"
    assert key not in repr(call.headers)


def test_a_batch_counts_every_email(
        vendor_gateway: Gateway, mock_vendors: MockVendors,
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent, key = agent_key(vendor_gateway, "resend-batch")
    point_resend(monkeypatch, vendor_gateway, key)
    emails: list[resend.Emails.SendParams] = [
        {"from": "shop@example.com", "to": "a@example.com", "subject": "1", "text": "x"},
        {"from": "shop@example.com", "to": ["b@example.com", "c@example.com"],
         "bcc": ["audit@example.com"], "subject": "2", "text": "y"},
        {"from": "shop@example.com", "to": "d@example.com", "subject": "3", "text": "z"},
    ]
    mark = mock_vendors.mark()

    answer = resend.Batch.send(emails)

    assert len(answer["data"]) == 3
    assert spent(vendor_gateway, agent) == int(5 * RESEND_PRICE * 1_000_000) == 4_500
    (call,) = mock_vendors.since(mark, "resend")
    assert call.path == "/emails/batch"
    assert len(json.loads(call.body)) == 3
    assert call.authorization == f"Bearer {RESEND_KEY}"


# --- over budget ---------------------------------------------------------------------------


def test_an_over_budget_call_is_each_sdks_own_error_with_status_402(
        vendor_gateway: Gateway, mock_vendors: MockVendors, twilio_http: TwilioHttpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    agent = unique("over-budget-sdks")
    vendor_gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": "0.0005", "period": "total", "mode": "hard"}]})  # below one SMS or email
    key = vendor_gateway.mint_key(agent)["key"]
    point_resend(monkeypatch, vendor_gateway, key)
    mark = mock_vendors.mark()

    with pytest.raises(TwilioRestException) as sms:
        twilio(vendor_gateway, key, twilio_http).messages.create(
            to="+14155550100", from_="+15017122661", body="hi")
    with pytest.raises(resend.exceptions.ResendError) as email:
        resend.Emails.send({"from": "shop@example.com", "to": "ada@example.com",
                            "subject": "s", "text": "t"})

    # 402 is neither SDK's card error nor retried by either; each reads Outlay's words
    assert sms.value.status == 402
    assert sms.value.code == "budget_exceeded"
    assert "budget" in sms.value.msg
    assert email.value.code == 402
    assert email.value.error_type == "budget_exceeded"
    assert "budget" in email.value.message
    assert mock_vendors.since(mark) == []
    refusals = vendor_gateway.audit(f"agent:{agent}")
    assert [(e["vendor"], e["code"]) for e in refusals] == [
        ("resend", "budget_exceeded"), ("twilio", "budget_exceeded")]
