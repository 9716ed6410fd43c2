"""Clamping through the gateway: a call that would not fit a hard budget at its own maximum
output (or the model's) is sent with a lower one, at least the floor (`clamp_max_tokens`,
256 tokens by default, or the call's own maximum when smaller), and says so;
`clamp_max_tokens: false` refuses it instead."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.money import usd_to_micros

from .fakes import CHAT, MESSAGE, Outlay, Reply, anthropic_answer, error_of, openai_answer

# test-gpt: $1/M input, $2/M output, at most 100 output tokens; test-claude: $3/M, $15/M, 200
NO_MAX = {"model": "test-gpt", "messages": CHAT["messages"]}
CLAUDE_NO_MAX = {"model": "test-claude", "messages": MESSAGE["messages"]}


async def reserved(outlay: Outlay) -> int:
    return usd_to_micros((await outlay.budget("agent:agent-a"))["reserved_usd"])


@pytest.mark.parametrize(("path", "body", "field", "most", "per_token"), [
    ("/v1/chat/completions", NO_MAX, "max_completion_tokens", 100, 2),
    ("/v1/responses", {"model": "test-gpt", "input": "hi"}, "max_output_tokens", 100, 2),
    ("/v1/messages", CLAUDE_NO_MAX, "max_tokens", 200, 15),
])
async def test_a_call_over_the_budget_is_sent_with_a_lower_maximum(
    outlay: Outlay, key: dict[str, Any], path: str, body: dict[str, Any], field: str,
    most: int, per_token: int,
) -> None:
    cap = per_token * most  # micro-USD: the output alone at the maximum fills it
    await outlay.set_policy("agent:agent-a", {
        "budgets": [{"usd": cap / 1_000_000}], "clamp_max_tokens": 5})
    answer = anthropic_answer() if field == "max_tokens" and "claude" in body["model"] \
        else openai_answer()
    outlay.upstream.script(Reply(body=answer))
    resp = await outlay.post(path, key["key"], body) if path != "/v1/messages" else \
        await outlay.messages(key["key"], body)
    assert resp.status == 200, await resp.text()
    sent = outlay.upstream.last_json()
    clamped = int(resp.headers["X-Outlay-Max-Tokens-Clamped"])
    assert sent[field] == clamped
    assert 5 <= clamped < most
    assert {k: v for k, v in sent.items() if k != field} == body
    entry = (await outlay.audit(limit=1))[0]
    held = usd_to_micros(entry["reserved_usd"])
    assert held <= cap
    assert cap - held < per_token  # one more token would not have fitted


async def test_a_call_that_fits_is_sent_as_it_came(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 1}], "clamp_max_tokens": True})
    resp = await outlay.chat(key["key"], NO_MAX)
    assert resp.status == 200
    assert outlay.upstream.last_json() == NO_MAX  # bounded by the model's 100, not told so
    assert "X-Outlay-Max-Tokens-Clamped" not in resp.headers


async def test_a_call_naming_its_maximum_is_lowered_in_its_own_field(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {
        "budgets": [{"usd": 0.0001}], "clamp_max_tokens": 1})
    outlay.upstream.script(Reply(body=openai_answer()))
    resp = await outlay.chat(key["key"], {**NO_MAX, "max_tokens": 100})
    assert resp.status == 200, await resp.text()
    clamped = int(resp.headers["X-Outlay-Max-Tokens-Clamped"])
    assert 1 <= clamped < 100
    sent = outlay.upstream.last_json()
    assert sent["max_tokens"] == clamped
    assert "max_completion_tokens" not in sent
    entry = (await outlay.audit(limit=1))[0]
    assert usd_to_micros(entry["reserved_usd"]) <= 100  # never past the $0.0001 cap


async def test_clamp_max_tokens_false_refuses_instead(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {
        "budgets": [{"usd": 0.0001}], "clamp_max_tokens": False})
    resp = await outlay.chat(key["key"], {**NO_MAX, "max_tokens": 100})
    assert resp.status == 402
    assert "X-Outlay-Max-Tokens-Clamped" not in resp.headers
    assert error_of(await resp.json(), "openai")["code"] == "budget_exceeded"
    assert await reserved(outlay) == 0
    assert outlay.upstream.requests == []


async def test_below_the_policys_floor_the_call_is_refused(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {
        "budgets": [{"usd": 0.0001}], "clamp_max_tokens": 90})  # room for about 45 tokens
    resp = await outlay.chat(key["key"], NO_MAX)
    assert resp.status == 402
    assert "X-Outlay-Max-Tokens-Clamped" not in resp.headers
    body = await resp.json()
    assert error_of(body, "openai")["code"] == "budget_exceeded"
    assert outlay.upstream.requests == []


async def test_without_the_policy_room_below_the_default_floor_is_refused(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 0.0001}]})
    resp = await outlay.chat(key["key"], NO_MAX)  # room for about 45 tokens, under 256
    assert resp.status == 402
    assert outlay.upstream.requests == []


async def test_a_bad_clamp_setting_is_refused_by_the_admin_api(outlay: Outlay) -> None:
    answer = await outlay.admin("PUT", "policies/agent:agent-a", {"clamp_max_tokens": 0},
                                expect=400)
    assert "clamp_max_tokens" in answer["error"]["message"]
    assert await outlay.admin("GET", "policies/agent:agent-a", expect=404)
