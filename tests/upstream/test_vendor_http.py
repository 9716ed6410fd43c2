"""VendorUpstream against real loopback servers: credentials, Twilio's account path, failures."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from outlay.upstream import BreakerState, UpstreamBroken, UpstreamRequest, UpstreamUnreachable
from outlay.upstream.vendors_http import VendorEndpoint, VendorUpstream, with_account_sid

Serve = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]
RawServe = Callable[..., Awaitable[str]]

AGENT_KEY = "olk_agent_key"
TWILIO_SID = "AC" + "1" * 32


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(
    vendor: str,
    path: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    query: str = "",
) -> UpstreamRequest:
    return UpstreamRequest(vendor, method, path, headers or {}, body, False, query)


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[name.lower(), value] for name, value in request.headers.items()],
            "body": (await request.read()).decode(),
        },
        headers={"Request-Id": "req_1"},
    )


@pytest.fixture
async def make_upstream() -> AsyncIterator[Callable[..., VendorUpstream]]:
    made: list[VendorUpstream] = []

    def make(vendors: dict[str, VendorEndpoint], **kwargs: Any) -> VendorUpstream:
        upstream = VendorUpstream(vendors, **kwargs)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.close()


async def seen_by_vendor(upstream: VendorUpstream, request: UpstreamRequest) -> dict[str, Any]:
    response = await upstream.send(request)
    try:
        assert response.status == 200
        seen: dict[str, Any] = json.loads(await response.read())
    finally:
        await response.close()
    return seen


def header_values(seen: dict[str, Any], name: str) -> list[str]:
    return [value for header, value in seen["headers"] if header == name]


async def test_stripe_gets_the_secret_key_and_never_the_agent_key(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream({"stripe": VendorEndpoint(base, "bearer", "sk_live_real")})
    seen = await seen_by_vendor(
        upstream,
        call(
            "stripe",
            "/v1/payment_intents",
            headers={
                "Authorization": f"Bearer {AGENT_KEY}",
                "X-Api-Key": AGENT_KEY,
                "Idempotency-Key": "order-42",
                "Stripe-Version": "2024-06-20",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            body=b"amount=2000&currency=usd&metadata[order]=42",
            query="expand[]=customer",
        ),
    )
    assert seen["method"] == "POST"
    assert seen["raw_path"] == "/v1/payment_intents?expand[]=customer"
    assert seen["body"] == "amount=2000&currency=usd&metadata[order]=42"
    assert header_values(seen, "authorization") == ["Bearer sk_live_real"]
    assert header_values(seen, "x-api-key") == []
    assert header_values(seen, "idempotency-key") == ["order-42"]
    assert header_values(seen, "stripe-version") == ["2024-06-20"]
    assert AGENT_KEY not in json.dumps(seen)


async def test_resend_gets_its_api_key_as_a_bearer_token(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream({"resend": VendorEndpoint(base + "/", "bearer", "re_real")})
    seen = await seen_by_vendor(
        upstream,
        call("resend", "/emails", headers={"Authorization": f"Bearer {AGENT_KEY}"}, body=b"{}"),
    )
    assert seen["raw_path"] == "/emails"
    assert header_values(seen, "authorization") == ["Bearer re_real"]
    assert AGENT_KEY not in json.dumps(seen)


async def test_twilio_gets_basic_auth_and_the_configured_account_in_the_path(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    base = await serve(echo)
    endpoint = VendorEndpoint(
        base, "basic", "real-token", username=TWILIO_SID, account_sid=TWILIO_SID
    )
    upstream = make_upstream({"twilio": endpoint})
    # The agent's SDK puts whatever SID it was given in the path, and its key as the password.
    seen = await seen_by_vendor(
        upstream,
        call(
            "twilio",
            "/2010-04-01/Accounts/ACagent/Messages.json",
            headers={"Authorization": basic("ACagent", AGENT_KEY)},
            body=b"To=%2B15558675310&From=%2B15017122661&Body=hi",
        ),
    )
    assert seen["raw_path"] == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert header_values(seen, "authorization") == [basic(TWILIO_SID, "real-token")]
    assert seen["body"] == "To=%2B15558675310&From=%2B15017122661&Body=hi"
    assert "ACagent" not in json.dumps(seen)
    assert AGENT_KEY not in json.dumps(seen)


async def test_twilio_fetch_of_the_account_itself_is_rewritten_too(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    base = await serve(echo)
    endpoint = VendorEndpoint(base, "basic", "t", username=TWILIO_SID, account_sid=TWILIO_SID)
    upstream = make_upstream({"twilio": endpoint})
    seen = await seen_by_vendor(
        upstream, call("twilio", "/2010-04-01/Accounts/ACother.json", method="GET")
    )
    assert seen["method"] == "GET"
    assert seen["raw_path"] == f"/2010-04-01/Accounts/{TWILIO_SID}.json"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/2010-04-01/Accounts/ACx/Messages.json", "/2010-04-01/Accounts/ACreal/Messages.json"),
        (
            "/2010-04-01/Accounts/ACx/Messages/SM1.json",
            "/2010-04-01/Accounts/ACreal/Messages/SM1.json",
        ),
        ("/2010-04-01/Accounts/ACx.json", "/2010-04-01/Accounts/ACreal.json"),
        ("/2010-04-01/Accounts/ACx", "/2010-04-01/Accounts/ACreal"),
        ("/2010-04-01/Accounts/a%2Fb/Calls.json", "/2010-04-01/Accounts/ACreal/Calls.json"),
        # Only the account segment moves: a later "Accounts" is someone's data, not a path.
        (
            "/2010-04-01/Accounts/ACx/Messages/Accounts/ACy.json",
            "/2010-04-01/Accounts/ACreal/Messages/Accounts/ACy.json",
        ),
        ("/2010-04-01/Accounts.json", "/2010-04-01/Accounts.json"),
        ("/v1/Services", "/v1/Services"),
    ],
)
def test_the_account_segment_is_rewritten(path: str, expected: str) -> None:
    assert with_account_sid(path, "ACreal") == expected


async def test_a_header_vendor_gets_its_secret_in_that_header_replacing_the_agents(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    base = await serve(echo)
    endpoint = VendorEndpoint(base, "header", "vendor-secret", header_name="X-Acme-Key")
    upstream = make_upstream({"acme": endpoint})
    seen = await seen_by_vendor(
        upstream,
        call(
            "acme",
            "/v2/jobs",
            headers={"X-Acme-Key": AGENT_KEY, "Authorization": f"Bearer {AGENT_KEY}"},
        ),
    )
    assert header_values(seen, "x-acme-key") == ["vendor-secret"]
    assert header_values(seen, "authorization") == []


async def test_basic_auth_without_a_username_sends_the_secret_as_the_user(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream({"acme": VendorEndpoint(base, "basic", "key_123")})
    seen = await seen_by_vendor(upstream, call("acme", "/charge"))
    assert header_values(seen, "authorization") == [basic("key_123", "")]


async def test_responses_pass_through_with_their_status_and_headers(
    serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        body = {"error": {"type": "invalid_request_error", "message": "No such customer"}}
        return web.json_response(body, status=404, headers={"Request-Id": "req_9"})

    base = await serve(refuse)
    upstream = make_upstream({"stripe": VendorEndpoint(base, "bearer", "sk")})
    response = await upstream.send(call("stripe", "/v1/customers/cus_x", method="GET"))
    try:
        assert response.status == 404
        assert response.headers["request-id"] == "req_9"
        assert "content-length" not in {name.lower() for name in response.headers}
        assert json.loads(await response.read())["error"]["message"] == "No such customer"
    finally:
        await response.close()


async def test_an_unconfigured_vendor_is_unreachable(
    make_upstream: Callable[..., VendorUpstream],
) -> None:
    upstream = make_upstream({})
    with pytest.raises(UpstreamUnreachable, match="not configured"):
        await upstream.send(call("stripe", "/v1/charges"))


async def test_a_refused_connection_is_unreachable(
    closed_port_url: str, make_upstream: Callable[..., VendorUpstream]
) -> None:
    upstream = make_upstream({"stripe": VendorEndpoint(closed_port_url, "bearer", "sk")})
    with pytest.raises(UpstreamUnreachable):
        await upstream.send(call("stripe", "/v1/charges"))


async def test_a_connection_lost_after_sending_is_broken(
    raw_server: RawServe, make_upstream: Callable[..., VendorUpstream]
) -> None:
    received = asyncio.Event()

    async def hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, release: asyncio.Event
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.set()

    base = await raw_server(hang_up)
    upstream = make_upstream({"twilio": VendorEndpoint(base, "basic", "t", username="AC1")})
    with pytest.raises(UpstreamBroken):
        await upstream.send(call("twilio", "/2010-04-01/Accounts/AC1/Messages.json"))
    assert received.is_set()


async def test_a_slow_vendor_times_out_as_broken(
    raw_server: RawServe, make_upstream: Callable[..., VendorUpstream]
) -> None:
    async def stall(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, release: asyncio.Event
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()

    base = await raw_server(stall)
    upstream = make_upstream({"resend": VendorEndpoint(base, "bearer", "re")}, timeout_s=0.2)
    with pytest.raises(UpstreamBroken):
        await upstream.send(call("resend", "/emails", body=b"{}"))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/../payment_intents",
        "/v1/customers/%2e%2e/payment_intents",
        "/v1/customers/..%2Fpayment_intents",
        "/v1/./payment_intents",
    ],
)
async def test_dot_segments_are_refused_before_anything_is_sent(
    path: str, serve: Serve, make_upstream: Callable[..., VendorUpstream]
) -> None:
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.raw_path)
        return web.Response()

    upstream = make_upstream({"stripe": VendorEndpoint(await serve(record), "bearer", "sk")})
    with pytest.raises(UpstreamUnreachable, match="dot segments"):
        await upstream.send(call("stripe", path))
    assert hits == []


async def test_health_lists_every_vendor(make_upstream: Callable[..., VendorUpstream]) -> None:
    upstream = make_upstream(
        {
            "stripe": VendorEndpoint("https://api.stripe.com", "bearer", "sk"),
            "resend": VendorEndpoint("https://api.resend.com", "bearer", "re"),
        }
    )
    assert upstream.vendors == {"stripe", "resend"}
    assert sorted(h.provider for h in upstream.health()) == ["resend", "stripe"]
    assert all(h.state is BreakerState.CLOSED for h in upstream.health())


def test_the_secret_stays_out_of_reprs() -> None:
    endpoint = VendorEndpoint("https://api.stripe.com", "bearer", "sk_live_secret")
    assert "sk_live_secret" not in repr(endpoint)


def test_header_auth_needs_a_header_name() -> None:
    with pytest.raises(ValueError, match="header_name"):
        VendorEndpoint("https://x.example", "header", "s")
