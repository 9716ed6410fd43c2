"""Header bytes that are not printable ASCII, sent on a real socket as a hostile client would:
a bad `X-Outlay-Approval` or `Idempotency-Key` is a 400 naming the header, a bad credential
a 401, never a 500, and nothing of it reaches the store (the next call is served)."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from typing import Any

import pytest

from .fakes import ADMIN_TOKEN, CHAT, MESSAGE, WAIT_S, Outlay, error_of

NOT_UTF8 = b"\xff\xfe\xc3("  # as aiohttp hands them on: lone surrogates
STRIPE = b"/vendors/stripe/v1/payment_intents"
PAYMENT = b"amount=2000&currency=usd"
FORM = b"application/x-www-form-urlencoded"


def request(path: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
            content_type: bytes = b"application/json") -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: gw", b"Content-Type: " + content_type,
             b"Content-Length: %d" % len(body), b"Connection: close",
             *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(outlay: Outlay, raw: bytes) -> tuple[int, dict[str, str], Any]:
    """Send `raw` on a connection of its own; the answer's status, headers and JSON body."""
    server = outlay.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(), WAIT_S)  # Connection: close
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


def chat(secret: str, *extra: tuple[bytes, bytes]) -> bytes:
    return request(b"/v1/chat/completions",
                   [(b"Authorization", b"Bearer " + secret.encode()), *extra],
                   json.dumps(CHAT).encode())


def messages(secret: str, *extra: tuple[bytes, bytes]) -> bytes:
    return request(b"/v1/messages", [(b"x-api-key", secret.encode()), *extra],
                   json.dumps(MESSAGE).encode())


def payment(secret: str, *extra: tuple[bytes, bytes]) -> bytes:
    return request(STRIPE, [(b"Authorization", b"Bearer " + secret.encode()), *extra],
                   PAYMENT, FORM)


async def assert_refused_invalid(outlay: Outlay, status: int, headers: dict[str, str],
                                 code: str, key_id: str | None) -> None:
    """The refusal is in the ledger, at no cost, under the key (or none)."""
    assert status in (400, 401)
    [entry] = await outlay.audit()
    assert entry["request_id"] == headers["x-outlay-request-id"]
    assert (entry["status"], entry["code"], entry["key_id"]) == (status, code, key_id)
    assert entry["cost_usd"] == "0"


async def assert_still_serving(outlay: Outlay, secret: str) -> None:
    status, _, _ = await exchange(outlay, chat(secret))
    assert status == 200
    await outlay.store.wait_settled((await outlay.audit(limit=1))[0]["request_id"])


# --- 400 for a header Outlay stores or compares ---------------------------------------------


@pytest.mark.parametrize(("build", "flavor"), [(chat, "openai"), (messages, "anthropic")])
@pytest.mark.parametrize("value", [NOT_UTF8, b"apr_" + NOT_UTF8, b"apr_\tx", b"apr_nope"])
async def test_a_bad_approval_header_on_an_llm_route_is_a_400_naming_it(
    outlay: Outlay, key: dict[str, Any], build: Any, flavor: str, value: bytes
) -> None:
    status, headers, body = await exchange(outlay, build(key["key"],
                                                         (b"X-Outlay-Approval", value)))
    assert status == 400, body
    error = error_of(body, flavor)
    assert error["code"] == "invalid_request"
    assert error["type"] == "invalid_request_error"
    assert "X-Outlay-Approval" in error["message"]
    if flavor == "openai":
        assert error["param"] == "X-Outlay-Approval"
    await assert_refused_invalid(outlay, status, headers, "invalid_request", key["id"])
    assert outlay.upstream.requests == []
    await assert_still_serving(outlay, key["key"])


@pytest.mark.parametrize(("name", "value"), [
    (b"Idempotency-Key", NOT_UTF8), (b"Idempotency-Key", b"order\tx"),
    (b"Idempotency-Key", b"k" * 257), (b"X-Outlay-Approval", NOT_UTF8),
])
async def test_a_bad_stored_header_on_a_vendor_call_is_a_400_naming_it(
    outlay: Outlay, key: dict[str, Any], name: bytes, value: bytes
) -> None:
    status, headers, body = await exchange(outlay, payment(key["key"], (name, value)))
    assert status == 400, body
    error = error_of(body, "openai")
    assert (error["code"], error["param"]) == ("invalid_request", name.decode())
    assert name.decode() in error["message"]
    await assert_refused_invalid(outlay, status, headers, "invalid_request", key["id"])
    if b"Approval" in name:
        # a well-formed approval id passes the edge, and is judged: it names no approval
        status, _, body = await exchange(outlay, payment(key["key"],
                                                         (name, b"apr_0123456789abcdef")))
        # Stripe's SDK reads a 403 as a PermissionError without its code: a 400 on Stripe
        assert (status, error_of(body, "openai")["code"]) == (400, "approval_mismatch"), body
        good: list[tuple[bytes, bytes]] = []
    else:
        good = [(name, b"order-1")]
    # the same call with a good value (or none) is admitted and charged once
    status, _, body = await exchange(outlay, payment(key["key"], *good))
    assert status == 200, body


async def test_a_good_idempotency_key_still_makes_a_retry_free(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    for _ in range(2):
        status, _, body = await exchange(outlay, payment(key["key"],
                                                         (b"Idempotency-Key", b"order 7 ~")))
        assert status == 200, body
    codes = [e["code"] for e in await outlay.audit()]
    assert codes.count("idempotent_replay") == 1


# --- 401 for a credential that cannot be one --------------------------------------------------


@pytest.mark.parametrize(("raw", "flavor"), [
    (request(b"/v1/chat/completions", [(b"Authorization", b"Bearer olk_" + NOT_UTF8)],
             json.dumps(CHAT).encode()), "openai"),
    (request(b"/v1/chat/completions", [(b"Authorization", b"Bearer olk_\tx")],
             json.dumps(CHAT).encode()), "openai"),
    (request(b"/v1/messages", [(b"x-api-key", b"olk_" + NOT_UTF8)],
             json.dumps(MESSAGE).encode()), "anthropic"),
    (request(STRIPE, [(b"Authorization", b"Bearer " + NOT_UTF8)], PAYMENT, FORM), "openai"),
    (request(STRIPE, [(b"x-api-key", NOT_UTF8)], PAYMENT, FORM), "openai"),
    # Twilio's form: basic auth, the key as the password
    (request(b"/vendors/twilio/2010-04-01/Accounts/AC1/Messages.json",
             [(b"Authorization", b"Basic " + NOT_UTF8)], b"To=%2B15005550006&Body=hi", FORM),
     "twilio"),
    (request(b"/vendors/twilio/2010-04-01/Accounts/AC1/Messages.json",
             [(b"Authorization", b"Basic " + base64.b64encode(b"AC1:olk_" + NOT_UTF8))],
             b"To=%2B15005550006&Body=hi", FORM), "twilio"),
], ids=["bearer", "bearer-tab", "x-api-key", "vendor-bearer", "vendor-x-api-key",
        "basic-raw", "basic-decoded"])
async def test_a_credential_of_bad_bytes_is_a_401(
    outlay: Outlay, key: dict[str, Any], raw: bytes, flavor: str
) -> None:
    status, headers, body = await exchange(outlay, raw)
    assert status == 401, body
    assert error_of(body, flavor)["code"] == "invalid_api_key"
    await assert_refused_invalid(outlay, status, headers, "invalid_api_key", None)
    await assert_still_serving(outlay, key["key"])


async def test_models_with_a_credential_of_bad_bytes_is_a_401(outlay: Outlay) -> None:
    raw = (b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
           b"Authorization: Bearer olk_" + NOT_UTF8 + b"\r\n\r\n")
    status, _, body = await exchange(outlay, raw)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("value", [b"Bearer " + NOT_UTF8, b"Bearer " + ADMIN_TOKEN.encode()
                                   + NOT_UTF8, b"Bearer adm\tx", NOT_UTF8])
async def test_an_admin_token_of_bad_bytes_is_a_401(outlay: Outlay, value: bytes) -> None:
    raw = (b"GET /admin/v1/keys HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
           b"Authorization: " + value + b"\r\n\r\n")
    status, _, body = await exchange(outlay, raw)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_admin_token"
    assert await outlay.admin("GET", "keys") == {"keys": []}


# --- one agent's bad bytes and everyone else's calls ------------------------------------------


async def test_honest_agents_are_untouched_by_another_agents_bad_header_bytes(
    make_outlay: Any,
) -> None:
    """Bad bytes in X-Outlay-Approval and Idempotency-Key used to roll back the store's whole
    group-commit batch: other agents' calls got 503 and their settlements were lost."""
    outlay: Outlay = await make_outlay()
    honest = [await outlay.mint(f"honest-{n}") for n in range(5)]
    hostile = await outlay.mint("hostile")
    for minted in (*honest, hostile):
        await outlay.set_policy(f"agent:{minted['agent']}",
                                {"budgets": [{"usd": 10, "period": "day"}]})
    bad = [chat(hostile["key"], (b"X-Outlay-Approval", b"apr_" + NOT_UTF8)),
           payment(hostile["key"], (b"Idempotency-Key", NOT_UTF8))]

    async def agent(secret: str) -> list[int]:
        return [(await exchange(outlay, chat(secret)))[0] for _ in range(8)]

    async def attacker() -> list[int]:
        return [(await exchange(outlay, bad[n % 2]))[0] for n in range(24)]

    results = await asyncio.gather(attacker(), *(agent(m["key"]) for m in honest))
    assert results[0] == [400] * 24
    assert results[1:] == [[200] * 8] * len(honest)
    for minted in honest:
        entries = await outlay.audit(scope=f"agent:{minted['agent']}", limit=100)
        assert len(entries) == 8
        for entry in entries:
            await outlay.store.wait_settled(entry["request_id"])
        budget = await outlay.budget(f"agent:{minted['agent']}")
        assert budget["reserved_usd"] == "0"
        spent = sum(Decimal(e["cost_usd"]) for e in
                    await outlay.audit(scope=f"agent:{minted['agent']}", limit=100))
        assert Decimal(budget["spent_usd"]) == spent > 0
