"""SPEC §4's error table, on both client families: status, code, details, body shape, headers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import ClientResponse

from outlay.policy.money import micros_to_usd, usd_to_micros

from .fakes import (
    CHAT,
    MESSAGE,
    SSE_HEADERS,
    MakeOutlay,
    Outlay,
    Reply,
    anthropic_answer,
    anthropic_stream,
    error_of,
    openai_answer,
    openai_stream,
    price_table,
    read_at_least,
    read_rest,
)

MINUTE_HOUR_DAY = {"rpm": 60, "rph": 3600, "rpd": 86400}


@pytest.fixture(params=["openai", "anthropic"])
def flavor(request: pytest.FixtureRequest, outlay: Outlay) -> str:
    """Which client family calls: /v1/chat/completions or /v1/messages."""
    name: str = request.param
    outlay.upstream.default = Reply(
        body=openai_answer() if name == "openai" else anthropic_answer())
    return name


async def call(outlay: Outlay, flavor: str, key: str | None, **fields: Any) -> ClientResponse:
    if flavor == "openai":
        resp: ClientResponse = await outlay.chat(key, {**CHAT, **fields})
    else:
        resp = await outlay.messages(key, {**MESSAGE, **fields})
    return resp


def stream_reply(flavor: str, pause_after: int | None = None) -> Reply:
    chunks = openai_stream() if flavor == "openai" else anthropic_stream()
    return Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=pause_after)


async def refused(resp: ClientResponse, flavor: str, status: int, code: str) -> dict[str, Any]:
    """Check a refusal's status, envelope, code and request id; return its error object."""
    body = await resp.json()
    assert resp.status == status, body
    assert resp.content_type == "application/json"
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    error = error_of(body, flavor)
    assert error["code"] == code
    return error


async def test_no_key_is_refused_before_the_upstream(outlay: Outlay, flavor: str) -> None:
    error = await refused(await call(outlay, flavor, None), flavor, 401, "invalid_api_key")
    assert error["type"] == "authentication_error"
    assert outlay.upstream.requests == []


async def test_unknown_key(outlay: Outlay, flavor: str) -> None:
    await refused(await call(outlay, flavor, "olk_not-a-key"), flavor, 401, "invalid_api_key")
    assert outlay.upstream.requests == []


async def test_refusal_request_id_is_the_audit_request_id(outlay: Outlay, flavor: str) -> None:
    resp = await call(outlay, flavor, "olk_not-a-key")
    [entry] = await outlay.audit()
    assert entry["request_id"] == resp.headers["X-Outlay-Request-Id"]
    assert entry["decision"] == "refused"
    assert entry["status"] == 401


async def test_revoked_key(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    error = await refused(await call(outlay, flavor, key["key"]), flavor, 401, "key_revoked")
    assert key["id"] in error["message"]
    assert outlay.upstream.requests == []


async def test_expired_key(outlay: Outlay, flavor: str) -> None:
    minted = await outlay.mint(ttl_seconds=60)
    assert (await call(outlay, flavor, minted["key"])).status == 200
    outlay.clock.advance(60)
    error = await refused(await call(outlay, flavor, minted["key"]), flavor, 401, "key_expired")
    assert minted["expires_at"] in error["message"]
    assert len(outlay.upstream.requests) == 1


async def test_model_outside_the_allow_list(outlay: Outlay, flavor: str,
                                            key: dict[str, Any]) -> None:
    allowed = ["test-free", "gpt-4o-*"]
    await outlay.set_policy("agent:agent-a", {"models": allowed})
    error = await refused(await call(outlay, flavor, key["key"]), flavor, 403,
                          "model_not_allowed")
    assert error["type"] == "permission_error"
    assert error["allowed"] == allowed
    assert error["scope"] == "agent:agent-a"
    for name in allowed:
        assert name in error["message"]
    assert outlay.upstream.requests == []


async def test_free_models_only(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    table = price_table()
    free = [name for name in table.names() if (p := table.resolve(name)) and p.free]
    assert "test-free" in free
    await outlay.set_policy(f"key:{key['id']}", {"free_models_only": True})
    error = await refused(await call(outlay, flavor, key["key"]), flavor, 403,
                          "model_not_allowed")
    assert error["allowed"] == free
    assert "test-free" in error["message"]
    assert (await outlay.chat(key["key"], {**CHAT, "model": "test-free"})).status == 200


async def test_vendor_not_allowed(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"vendors": ["stripe"]})
    error = await refused(await call(outlay, flavor, key["key"]), flavor, 403,
                          "vendor_not_allowed")
    assert error["allowed"] == ["stripe"]
    assert "stripe" in error["message"]
    assert outlay.upstream.requests == []


@pytest.mark.parametrize(("window", "code"), [
    ("rpm", "rate_limit_exceeded"),
    ("rph", "hourly_rate_limit_exceeded"),
    ("rpd", "daily_rate_limit_exceeded"),
])
async def test_request_rate_limits(
    outlay: Outlay, flavor: str, key: dict[str, Any], window: str, code: str
) -> None:
    scope = f"key:{key['id']}"
    await outlay.set_policy(scope, {window: 2})
    for _ in range(2):
        assert (await call(outlay, flavor, key["key"])).status == 200
    resp = await call(outlay, flavor, key["key"])
    error = await refused(resp, flavor, 429, code)
    assert error["type"] == "rate_limit_error"
    assert error["scope"] == scope
    assert error["limit"] == 2
    retry = error["retry_after"]
    assert isinstance(retry, int)
    assert 0 < retry <= MINUTE_HOUR_DAY[window] * 61 // 60  # a window and one bucket at most
    assert resp.headers["Retry-After"] == str(retry)
    assert len(outlay.upstream.requests) == 2

    # Retry-After is honest: a second early is still refused, on time is let through
    outlay.clock.advance(retry - 1)
    assert (await call(outlay, flavor, key["key"])).status == 429
    outlay.clock.advance(1)
    assert (await call(outlay, flavor, key["key"])).status == 200


async def test_token_rate_limit(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    scope = f"key:{key['id']}"
    await outlay.set_policy(scope, {"tpm": 100_000})
    first = await call(outlay, flavor, key["key"])
    assert first.status == 200
    reserved_tokens = 100_000 - int(first.headers["x-ratelimit-remaining-tokens"])
    # the call settled to the 15 tokens the provider reported; one more reservation won't fit
    limit = 15 + reserved_tokens - 1
    await outlay.set_policy(scope, {"tpm": limit})
    resp = await call(outlay, flavor, key["key"])
    error = await refused(resp, flavor, 429, "token_rate_limit_exceeded")
    assert error["scope"] == scope
    assert error["limit"] == limit
    assert resp.headers["Retry-After"] == str(error["retry_after"])
    assert resp.headers["x-ratelimit-limit-tokens"] == str(limit)
    assert resp.headers["x-ratelimit-remaining-tokens"] == "0"
    outlay.clock.advance(error["retry_after"])
    assert (await call(outlay, flavor, key["key"])).status == 200


async def test_concurrency_limit(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"max_parallel": 1})
    outlay.upstream.script(stream_reply(flavor, pause_after=1))
    held = await call(outlay, flavor, key["key"], stream=True)
    assert held.status == 200
    await read_at_least(held, 1)

    resp = await call(outlay, flavor, key["key"])
    error = await refused(resp, flavor, 429, "concurrency_limit_exceeded")
    assert error["scope"] == "agent:agent-a"
    assert error["limit"] == 1
    assert resp.headers["Retry-After"] == str(error["retry_after"])
    assert error["retry_after"] >= 1

    outlay.upstream.release.set()
    _, cut = await read_rest(held)
    assert not cut
    assert (await call(outlay, flavor, key["key"])).status == 200  # the slot was given back


async def test_hard_budget(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": "0.00001", "period": "day"}]})
    resp = await call(outlay, flavor, key["key"])
    error = await refused(resp, flavor, 402, "budget_exceeded")
    assert resp.headers["x-should-retry"] == "false"
    assert "Retry-After" not in resp.headers
    assert error["scope"] == "agent:agent-a"
    assert error["period"] == "day"
    assert error["spent_usd"] == "0"
    assert error["cap_usd"] == "0.00001"
    assert error["resets_at"] == "2025-06-16T00:00:00Z"
    assert "$0 spent of a $0.00001 hard cap" in error["message"]
    assert outlay.upstream.requests == []


async def test_hard_budget_counts_what_was_spent(outlay: Outlay, key: dict[str, Any]) -> None:
    assert (await outlay.chat(key["key"])).status == 200  # 10 in + 5 out: 20 micro-USD
    [entry] = await outlay.audit()
    assert entry["cost_usd"] == "0.00002"
    reserved = usd_to_micros(entry["reserved_usd"])
    cap = 20 + reserved - 1  # one micro-dollar short of what the next call may cost
    await outlay.set_policy("global", {"budgets": [{"usd": micros_to_usd(cap),
                                                    "period": "month"}]})
    resp = await outlay.chat(key["key"])
    error = await refused(resp, "openai", 402, "budget_exceeded")
    assert error["scope"] == "global"
    assert error["period"] == "month"
    assert error["spent_usd"] == "0.00002"
    assert error["resets_at"] == "2025-07-01T00:00:00Z"
    assert f"$0.00002 spent of a ${error['cap_usd']} hard cap" in error["message"]
    assert len(outlay.upstream.requests) == 1
    refusal = (await outlay.audit())[0]  # the ledger shows the spend and cap that refused it
    assert (refusal["code"], refusal["spent_usd"], refusal["cap_usd"]) == (
        "budget_exceeded", "0.00002", error["cap_usd"])


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ("POST", "/v1/nope", 404, "not_found"),
    ("GET", "/v1/messages", 405, "method_not_allowed"),
])
async def test_unknown_routes_answer_in_the_clients_error_shape(
        outlay: Outlay, method: str, path: str, status: int, code: str) -> None:
    resp = await outlay.client.request(method, path)
    flavor = "anthropic" if path.startswith("/v1/messages") else "openai"
    error = await refused(resp, flavor, status, code)
    assert path in error["message"]
    if status == 405:
        assert resp.headers["Allow"] == "POST"


async def test_soft_budget_lets_calls_through(outlay: Outlay, flavor: str,
                                              key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": "0.00001", "mode": "soft"}]})
    assert (await call(outlay, flavor, key["key"])).status == 200
    assert (await call(outlay, flavor, key["key"])).status == 200


async def test_price_unknown_under_a_hard_budget(outlay: Outlay, flavor: str,
                                                 key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": 100}]})
    resp = await call(outlay, flavor, key["key"], model="mystery-model-1")
    error = await refused(resp, flavor, 400, "price_unknown")
    assert "mystery-model-1" in error["message"]
    assert outlay.upstream.requests == []


async def test_price_unknown_without_a_hard_budget_passes(outlay: Outlay, flavor: str,
                                                          key: dict[str, Any]) -> None:
    resp = await call(outlay, flavor, key["key"], model="mystery-model-1")
    assert resp.status == 200
    [entry] = await outlay.audit()
    assert entry["decision"] == "allowed"
    assert entry["cost_usd"] == "0"


async def test_upstream_unreachable(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    outlay.upstream.script(Reply(unreachable=True))
    error = await refused(await call(outlay, flavor, key["key"]), flavor, 502,
                          "upstream_unavailable")
    assert ("anthropic" if flavor == "anthropic" else "openai") in error["message"]


async def test_state_store_unreachable_fails_closed(
        outlay: Outlay, flavor: str, key: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    await outlay.store.close()
    with caplog.at_level(logging.WARNING, "outlay.gateway"):
        error = await refused(await call(outlay, flavor, key["key"]), flavor, 503,
                              "enforcement_unavailable")
    assert "state store" in error["message"]
    assert outlay.upstream.requests == []
    # the operator sees why in the log, not only the agent in its answer
    [line] = [r.getMessage() for r in caplog.records if r.name == "outlay.gateway"]
    assert line.startswith("answering 503 enforcement_unavailable: ")


async def test_invalid_request_shape(outlay: Outlay, flavor: str, key: dict[str, Any]) -> None:
    resp = await call(outlay, flavor, key["key"], model=None)
    error = await refused(resp, flavor, 400, "invalid_request")
    assert error["type"] == "invalid_request_error"


async def test_request_too_large_shape(make_outlay: MakeOutlay) -> None:
    outlay = await make_outlay(max_body_bytes=64)
    key = await outlay.mint()
    for flavor in ("openai", "anthropic"):
        body = {**(CHAT if flavor == "openai" else MESSAGE), "pad": "x" * 100}
        resp = await call(outlay, flavor, key["key"], **body)
        await refused(resp, flavor, 413, "request_too_large")
