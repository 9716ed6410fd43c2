"""Vendor hosts' HTTP calls through `requests` and `httpx` go to the gateway's /vendors/ route with
the Outlay key; every other call is sent as it was. Transports are in-process: nothing leaves."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from requests.adapters import BaseAdapter
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]

import outlay
from outlay.sdk.vendor_http import VendorRoutes

GW = "http://gw.test:8800"
KEY = "olk_vendor"


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    yield
    outlay.restore()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- where a URL goes -----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "target"), [
    ("https://api.stripe.com/v1/payment_intents", f"{GW}/vendors/stripe/v1/payment_intents"),
    ("https://API.Stripe.com:443/v1/customers/cus_a%3Fb%23c?expand%5B%5D=x&limit=3",
     f"{GW}/vendors/stripe/v1/customers/cus_a%3Fb%23c?expand%5B%5D=x&limit=3"),
    ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
     f"{GW}/vendors/twilio/2010-04-01/Accounts/AC1/Messages.json"),
    ("https://api.resend.com/emails", f"{GW}/vendors/resend/emails"),
    ("https://api.resend.com", f"{GW}/vendors/resend/"),
    ("https://files.stripe.com/v1/files", None),
    ("https://api.openai.com/v1/chat/completions", None),
    ("https://example.com/api.stripe.com/v1", None),
])
def test_the_default_vendor_hosts_and_only_them(url: str, target: str | None) -> None:
    assert VendorRoutes.build(GW, KEY).target(url) == target


def test_vendors_add_hosts_override_them_and_none_leaves_one_alone() -> None:
    routes = VendorRoutes.build("https://outlay.internal/gw", KEY, {
        "api.acme.example": "acme", "API.Twilio.com": "twilio-eu", "api.resend.com": None})

    assert routes.target("https://api.acme.example/v1/jobs?a=1") == (
        "https://outlay.internal/gw/vendors/acme/v1/jobs?a=1")
    assert routes.target("https://api.twilio.com/x") == (
        "https://outlay.internal/gw/vendors/twilio-eu/x")
    assert routes.target("https://api.resend.com/emails") is None
    assert routes.target("https://api.stripe.com/v1") == (
        "https://outlay.internal/gw/vendors/stripe/v1")


@pytest.mark.parametrize(("before", "after"), [
    ({"Authorization": "Bearer sk_live_real"}, {"Authorization": f"Bearer {KEY}"}),
    ({"Authorization": basic("AC123", "real-token")}, {"Authorization": basic("AC123", KEY)}),
    ({"Authorization": "Basic not-base64!"}, {"Authorization": basic("", KEY)}),
    ({}, {"Authorization": f"Bearer {KEY}"}),
    ({"x-api-key": "acme-real"}, {"Authorization": f"Bearer {KEY}", "x-api-key": KEY}),
    ({"Authorization": b"Bearer sk_live_bytes"}, {"Authorization": f"Bearer {KEY}"}),
], ids=["bearer", "basic-keeps-user", "basic-garbled", "none", "x-api-key", "bytes"])
def test_the_credential_becomes_the_outlay_key_in_the_sdks_scheme(
        before: dict[str, Any], after: dict[str, str]) -> None:
    headers = requests.structures.CaseInsensitiveDict(before)
    VendorRoutes.build(GW, KEY).put_credentials(headers)
    assert dict(headers) == after


# --- requests -------------------------------------------------------------------------------


class Capture(BaseAdapter):
    """A requests transport that records what would have been sent and answers 200 {}."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append((request, kwargs))
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.headers = requests.structures.CaseInsensitiveDict(
            {"Content-Type": "application/json"})
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def session() -> Iterator[tuple[requests.Session, Capture]]:
    capture = Capture()
    with requests.Session() as session:
        session.mount("http://", capture)
        session.mount("https://", capture)
        yield session, capture


def test_a_stripe_call_over_requests_goes_to_the_gateway_as_the_key(
        session: tuple[requests.Session, Capture]) -> None:
    http, capture = session
    outlay.intercept_all(KEY, GW)

    http.post("https://api.stripe.com/v1/payment_intents?expand[]=customer",
              data={"amount": 2000, "currency": "usd"},
              headers={"Authorization": "Bearer sk_live_real", "Idempotency-Key": "order-1"})

    ((sent, _),) = capture.sent
    assert sent.url == f"{GW}/vendors/stripe/v1/payment_intents?expand%5B%5D=customer"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Idempotency-Key"] == "order-1"
    assert sent.body == "amount=2000&currency=usd"


def test_twilios_basic_auth_keeps_its_user_and_carries_the_key(
        session: tuple[requests.Session, Capture]) -> None:
    http, capture = session
    outlay.intercept_all(KEY, GW)

    http.post("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
              data={"To": "+14155550100", "Body": "hi"}, auth=("AC1", "real-token"))

    ((sent, _),) = capture.sent
    assert sent.url == f"{GW}/vendors/twilio/2010-04-01/Accounts/AC1/Messages.json"
    assert sent.headers["Authorization"] == basic("AC1", KEY)


def test_the_twilio_sdks_own_client_goes_through_the_patch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """TwilioHttpClient prepares and sends on its session itself, not via Session.request,
    with the proxies it chose for api.twilio.com; the gateway's are chosen afresh."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "gw.test")
    monkeypatch.setenv("no_proxy", "gw.test")
    capture = Capture()
    client = TwilioHttpClient()
    client.session.mount("https://", capture)
    client.session.mount("http://", capture)
    outlay.intercept_all(KEY, GW)
    try:
        client.request("POST", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
                       data={"To": "+14155550100"}, auth=("AC1", "real-token"))
    finally:
        client.session.close()

    ((sent, kwargs),) = capture.sent
    assert sent.url.startswith(f"{GW}/vendors/twilio/")
    assert sent.headers["Authorization"] == basic("AC1", KEY)
    assert "http" not in kwargs["proxies"]  # NO_PROXY covers the gateway


def test_other_hosts_and_calls_after_restore_are_sent_untouched(
        session: tuple[requests.Session, Capture]) -> None:
    http, capture = session
    outlay.intercept_all(KEY, GW)
    http.get("https://example.com/v1/things", headers={"Authorization": "Bearer mine"})
    outlay.restore()
    http.get("https://api.stripe.com/v1/customers", headers={"Authorization": "Bearer sk_real"})

    (other, _), (after, _) = capture.sent
    assert (other.url, other.headers["Authorization"]) == (
        "https://example.com/v1/things", "Bearer mine")
    assert (after.url, after.headers["Authorization"]) == (
        "https://api.stripe.com/v1/customers", "Bearer sk_real")


# --- httpx ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, json={"id": "email_1"})


def test_an_httpx_call_to_resend_goes_to_the_gateway_with_its_host_header() -> None:
    recorder = Recorder()
    outlay.intercept_all(KEY, GW)

    with httpx.Client(transport=httpx.MockTransport(recorder.handle)) as client:
        client.post("https://api.resend.com/emails", json={"to": ["a@example.com"]},
                    headers={"Authorization": "Bearer re_real"})
        client.get("https://example.com/x", headers={"Authorization": "Bearer mine"})

    sent, other = recorder.sent
    assert str(sent.url) == f"{GW}/vendors/resend/emails"
    assert sent.headers["host"] == "gw.test:8800"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.content == b'{"to":["a@example.com"]}'
    assert (str(other.url), other.headers["authorization"]) == ("https://example.com/x",
                                                                "Bearer mine")


def test_an_httpx_clients_own_auth_does_not_put_the_vendor_credential_back() -> None:
    recorder = Recorder()
    outlay.intercept_all(KEY, GW)

    with httpx.Client(transport=httpx.MockTransport(recorder.handle),
                      auth=("api", "re_real")) as client:
        client.get("https://api.resend.com/domains")

    (sent,) = recorder.sent
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_the_encoded_path_survives_the_rewrite() -> None:
    recorder = Recorder()
    outlay.intercept_all(KEY, GW)

    with httpx.Client(transport=httpx.MockTransport(recorder.handle)) as client:
        client.get("https://api.stripe.com/v1/customers/cus_a%3Fb%23c", params={"email": "a+b"})

    (sent,) = recorder.sent
    assert sent.url.raw_path == b"/vendors/stripe/v1/customers/cus_a%3Fb%23c?email=a%2Bb"


async def test_an_async_httpx_call_goes_to_the_gateway() -> None:
    recorder = Recorder()
    outlay.intercept_all(KEY, GW, vendors={"api.acme.example": "acme"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder.handle)) as client:
        await client.post("https://api.acme.example/v1/jobs", json={"units": 3},
                          headers={"x-api-key": "acme-real"})
    outlay.restore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder.handle)) as client:
        await client.post("https://api.acme.example/v1/jobs", json={"units": 3})

    during, after = recorder.sent
    assert str(during.url) == f"{GW}/vendors/acme/v1/jobs"
    assert during.headers["x-api-key"] == KEY
    assert str(after.url) == "https://api.acme.example/v1/jobs"
