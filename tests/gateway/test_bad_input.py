"""Bad input gets a clear 4xx, is recorded in the audit as `invalid` at no cost, never reaches
the provider, and leaves the gateway serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from .fakes import CHAT, MESSAGE, MakeOutlay, Outlay, error_of

JSON = "application/json"
BAD_BODIES = {
    "malformed JSON": (b'{"model": "test-gpt", "messages": [', JSON, None),
    "missing model": (orjson.dumps({"messages": CHAT["messages"]}), JSON, "model"),
    "model not a string": (orjson.dumps({**CHAT, "model": 4}), JSON, "model"),
    "array body": (b'[{"model": "test-gpt"}]', JSON, None),
    "string body": (b'"hello"', JSON, None),
    "empty body": (b"", JSON, None),
    "wrong content type": (orjson.dumps(CHAT), "text/plain", None),
    "form content type": (b"model=test-gpt", "application/x-www-form-urlencoded", None),
    "invalid UTF-8": (b'{"model": "test-gpt", "messages": [{"role": "user", '
                      b'"content": "\xff\xfe"}]}', JSON, None),
    "no messages": (orjson.dumps({"model": "test-gpt"}), JSON, "messages"),
    "negative max_tokens": (orjson.dumps({**CHAT, "max_tokens": -1}), JSON, "max_tokens"),
}


async def assert_recorded_invalid(outlay: Outlay, rid: str, status: int, code: str,
                                  key_id: str | None) -> None:
    [entry] = await outlay.audit()
    assert entry["request_id"] == rid
    assert entry["decision"] == "invalid"
    assert entry["status"] == status
    assert entry["code"] == code
    assert entry["cost_usd"] == "0"
    assert entry["reserved_usd"] == "0"
    assert entry["key_id"] == key_id


async def assert_still_serving(outlay: Outlay, secret: str) -> None:
    assert outlay.upstream.requests == []
    resp = await outlay.chat(secret)
    assert resp.status == 200
    assert len(outlay.upstream.requests) == 1


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bad_body_on_openai_route(outlay: Outlay, key: dict[str, Any], case: str) -> None:
    data, content_type, param = BAD_BODIES[case]
    resp = await outlay.client.post("/v1/chat/completions", data=data, headers={
        "Authorization": f"Bearer {key['key']}", "Content-Type": content_type})
    assert resp.status == 400
    error = error_of(await resp.json(), "openai")
    assert error["code"] == "invalid_request"
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    await assert_recorded_invalid(outlay, resp.headers["X-Outlay-Request-Id"], 400,
                                  "invalid_request", key["id"])
    await assert_still_serving(outlay, key["key"])


@pytest.mark.parametrize("case", ["malformed JSON", "missing model", "array body",
                                  "wrong content type", "invalid UTF-8"])
async def test_bad_body_on_anthropic_route(outlay: Outlay, key: dict[str, Any],
                                           case: str) -> None:
    data, content_type, _ = BAD_BODIES[case]
    resp = await outlay.client.post("/v1/messages", data=data, headers={
        "x-api-key": key["key"], "Content-Type": content_type})
    assert resp.status == 400
    assert error_of(await resp.json(), "anthropic")["code"] == "invalid_request"
    await assert_recorded_invalid(outlay, resp.headers["X-Outlay-Request-Id"], 400,
                                  "invalid_request", key["id"])
    await assert_still_serving(outlay, key["key"])


async def test_bad_body_without_a_key_is_refused_for_the_key(outlay: Outlay) -> None:
    resp = await outlay.client.post("/v1/chat/completions", data=b"{",
                                    headers={"Content-Type": JSON})
    # the key is judged from the head, before the body is read (tests/gateway/
    # test_auth_before_body.py): the refusal is the key's, recorded as refusals are
    assert resp.status == 401
    assert error_of(await resp.json(), "openai")["code"] == "invalid_api_key"
    [entry] = await outlay.audit()
    assert (entry["request_id"], entry["decision"], entry["status"], entry["code"],
            entry["key_id"]) == (resp.headers["X-Outlay-Request-Id"], "refused", 401,
                                 "invalid_api_key", None)


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON padded with whitespace to exactly `size` bytes."""
    raw = orjson.dumps(body)
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


async def test_body_at_the_limit_passes(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(max_body_bytes=1024)
    key = await outlay.mint()
    resp = await outlay.client.post("/v1/chat/completions", data=padded(CHAT, 1024), headers={
        "Authorization": f"Bearer {key['key']}", "Content-Type": JSON})
    assert resp.status == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_body_over_the_limit(make_outlay: MakeOutlay, chunked: bool, path: str) -> None:
    outlay = await make_outlay(max_body_bytes=1024)
    key = await outlay.mint()
    raw = padded(CHAT if path == "/v1/chat/completions" else MESSAGE, 1025 if not chunked
                 else 64 * 1024)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 512):
            yield raw[i:i + 512]

    resp = await outlay.client.post(path, data=pieces() if chunked else raw, headers={
        "Authorization": f"Bearer {key['key']}", "Content-Type": JSON})
    assert resp.status == 413
    flavor = "anthropic" if path == "/v1/messages" else "openai"
    error = error_of(await resp.json(), flavor)
    assert error["code"] == "request_too_large"
    assert "1024" in error["message"]
    await assert_recorded_invalid(outlay, resp.headers["X-Outlay-Request-Id"], 413,
                                  "request_too_large", key["id"])
    await assert_still_serving(outlay, key["key"])
