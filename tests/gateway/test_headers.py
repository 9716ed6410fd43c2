"""SPEC §4's headers on proxied responses: rate limits in three dialects, the tightest hard
budget, the request id and the cost; the provider's own rate-limit headers give way to ours."""

from __future__ import annotations

import re
from typing import Any

from outlay.policy.money import micros_to_usd, usd_to_micros

from .fakes import (
    CHAT,
    SSE_HEADERS,
    START_MS,
    Outlay,
    Reply,
    openai_answer,
    openai_stream,
    read_rest,
)

DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(s|ms)$")
NOW_S = START_MS // 1000
PROVIDER_LIMITS = {
    "Content-Type": "application/json",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-limit-tokens": "2000000",
    "x-ratelimit-remaining-tokens": "1999000",
    "x-ratelimit-reset-tokens": "30ms",
    "openai-processing-ms": "123",
    "x-request-id": "upstream-req-1",
}


async def test_rate_limit_headers_show_the_tightest_window(outlay: Outlay,
                                                           key: dict[str, Any]) -> None:
    await outlay.set_policy(f"key:{key['id']}", {"rpm": 10, "rph": 100})
    await outlay.set_policy("agent:agent-a", {"rpm": 3, "tpm": 10_000})
    await outlay.set_policy("global", {"rpd": 1000})
    resp = await outlay.chat(key["key"])
    assert resp.status == 200
    h = resp.headers
    assert h["X-RateLimit-Limit-Requests"] == "3"
    assert h["X-RateLimit-Remaining-Requests"] == "2"
    reset = int(h["X-RateLimit-Reset"])
    assert NOW_S < reset <= NOW_S + 61
    assert DURATION.match(h["x-ratelimit-reset-requests"])
    assert h["RateLimit-Policy"] == '"rpm";q=3;w=60'
    match = re.fullmatch(r'"rpm";r=2;t=(\d+)', h["RateLimit"])
    assert match
    assert NOW_S + int(match[1]) == reset
    assert h["x-ratelimit-limit-tokens"] == "10000"
    remaining_tokens = int(h["x-ratelimit-remaining-tokens"])
    assert 0 < remaining_tokens < 10_000
    assert DURATION.match(h["x-ratelimit-reset-tokens"])

    second = await outlay.chat(key["key"])
    assert second.headers["X-RateLimit-Remaining-Requests"] == "1"
    # the first call settled to the 15 tokens it used, so less than a reservation is gone
    assert int(second.headers["x-ratelimit-remaining-tokens"]) > remaining_tokens - (
        10_000 - remaining_tokens)


async def test_budget_headers_show_the_tightest_hard_budget(outlay: Outlay,
                                                            key: dict[str, Any]) -> None:
    await outlay.set_policy(f"key:{key['id']}", {"budgets": [{"usd": 1, "period": "day"}]})
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": "0.5", "period": "month"}]})
    await outlay.set_policy("global", {"budgets": [{"usd": "0.01", "mode": "soft"}]})
    resp = await outlay.chat(key["key"])
    assert resp.status == 200
    [entry] = await outlay.audit()
    reserved = usd_to_micros(entry["reserved_usd"])
    assert resp.headers["X-Budget-Limit-USD"] == "0.5"
    # headers go out before the call settles: the reservation is what is held against it
    assert resp.headers["X-Budget-Remaining-USD"] == micros_to_usd(500_000 - reserved)
    assert resp.headers["X-Outlay-Cost-USD"] == "0.00002"

    second = await outlay.chat(key["key"])
    assert second.headers["X-Budget-Remaining-USD"] == micros_to_usd(500_000 - 20 - reserved)


async def test_no_limit_headers_without_limits(outlay: Outlay, key: dict[str, Any]) -> None:
    resp = await outlay.chat(key["key"])
    assert resp.status == 200
    ours = [name for name in resp.headers
            if name.lower().startswith(("x-ratelimit", "ratelimit", "x-budget"))]
    assert ours == []
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    assert resp.headers["X-Outlay-Cost-USD"] == "0.00002"


async def test_request_id_is_the_audit_request_id(outlay: Outlay, key: dict[str, Any]) -> None:
    resp = await outlay.chat(key["key"])
    [entry] = await outlay.audit()
    assert resp.headers["X-Outlay-Request-Id"] == entry["request_id"]


async def test_provider_limits_give_way_to_ours(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"rpm": 5, "tpm": 1000})
    outlay.upstream.script(Reply(headers=PROVIDER_LIMITS, body=openai_answer()))
    resp = await outlay.chat(key["key"])
    h = resp.headers
    assert h["X-RateLimit-Limit-Requests"] == "5"
    assert h.getall("x-ratelimit-limit-requests") == ["5"]
    assert h.getall("x-ratelimit-remaining-requests") == ["4"]
    assert h["x-ratelimit-reset-requests"] != "6ms"
    assert h.getall("x-ratelimit-limit-tokens") == ["1000"]
    assert h["x-ratelimit-reset-tokens"] != "30ms"
    # the provider's other headers pass
    assert h["openai-processing-ms"] == "123"
    assert h["x-request-id"] == "upstream-req-1"


async def test_provider_limits_pass_when_outlay_has_none(outlay: Outlay,
                                                         key: dict[str, Any]) -> None:
    outlay.upstream.script(Reply(headers=PROVIDER_LIMITS, body=openai_answer()))
    resp = await outlay.chat(key["key"])
    assert resp.headers["x-ratelimit-limit-requests"] == "10000"
    assert resp.headers["x-ratelimit-reset-tokens"] == "30ms"


async def test_hop_by_hop_and_framing_headers_are_not_copied(outlay: Outlay,
                                                             key: dict[str, Any]) -> None:
    outlay.upstream.script(Reply(body=openai_answer(), headers={
        "Content-Type": "application/json", "Content-Length": "999999",
        "Content-Encoding": "gzip", "Keep-Alive": "timeout=5", "Server": "upstream/1.0",
        "X-Outlay-Request-Id": "forged", "X-Outlay-Cost-USD": "999"}))
    resp = await outlay.chat(key["key"])
    assert resp.status == 200
    assert (await resp.json())["usage"]["total_tokens"] == 15  # body framed by the gateway
    assert "gzip" not in resp.headers.get("Content-Encoding", "")
    assert "Keep-Alive" not in resp.headers
    assert resp.headers.get("Server") != "upstream/1.0"
    assert resp.headers.getall("X-Outlay-Request-Id") != ["forged"]
    assert resp.headers.getall("X-Outlay-Cost-USD") == ["0.00002"]


async def test_stream_headers_carry_limits_but_no_cost(outlay: Outlay,
                                                       key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"rpm": 5, "budgets": [{"usd": 1}]})
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream()))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["X-RateLimit-Remaining-Requests"] == "4"
    assert resp.headers["X-Budget-Limit-USD"] == "1"
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    assert "X-Outlay-Cost-USD" not in resp.headers  # not known when the headers are sent
    await read_rest(resp)


async def test_upstream_error_passes_with_our_headers(outlay: Outlay,
                                                      key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"rpm": 5})
    body = b'{"error": {"message": "bad", "type": "invalid_request_error", "code": null}}'
    outlay.upstream.script(Reply(status=400, body=body))
    resp = await outlay.chat(key["key"])
    assert resp.status == 400
    assert await resp.read() == body
    assert resp.headers["X-RateLimit-Remaining-Requests"] == "4"
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")


async def test_limit_headers_ride_on_upstream_unavailable(outlay: Outlay,
                                                          key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"rpm": 5})
    outlay.upstream.script(Reply(unreachable=True))
    resp = await outlay.chat(key["key"])
    assert resp.status == 502
    assert resp.headers["X-RateLimit-Remaining-Requests"] == "4"


async def test_429_carries_the_refusing_window(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"rpm": 1})
    await outlay.chat(key["key"])
    resp = await outlay.chat(key["key"])
    assert resp.status == 429
    retry = int(resp.headers["Retry-After"])
    assert resp.headers["x-ratelimit-limit-requests"] == "1"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert resp.headers["X-RateLimit-Reset"] == str(NOW_S + retry)
    assert resp.headers["RateLimit-Policy"] == '"rpm";q=1;w=60'
    assert resp.headers["RateLimit"] == f'"rpm";r=0;t={retry}'


async def test_ratelimit_fields_name_the_window_they_describe(outlay: Outlay,
                                                              key: dict[str, Any]) -> None:
    await outlay.set_policy(f"key:{key['id']}", {"rpm": 5})
    await outlay.set_policy("agent:agent-a", {"rph": 5})
    resp = await outlay.chat(key["key"])
    policy = re.fullmatch(r'"(\w+)";q=5;w=(\d+)', resp.headers["RateLimit-Policy"])
    state = re.fullmatch(r'"(\w+)";r=4;t=(\d+)', resp.headers["RateLimit"])
    assert policy
    assert state
    assert policy[1] == state[1]
    # the reset belongs to the named window: within it, and past a minute only for rph
    assert int(state[2]) <= int(policy[2]) * 61 // 60
    assert (int(state[2]) > 61) == (policy[1] == "rph")
