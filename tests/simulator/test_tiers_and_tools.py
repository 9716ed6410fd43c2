"""The simulated providers report service tiers, server-side tool uses and long inputs the
way the real APIs do, checked against the official SDKs' own types; a ``sim-max`` model
bills every output token a request allows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from outlay.simulator.common import MAX_DEFAULT_OUTPUT_TOKENS
from outlay.simulator.providers import SimulatedUpstream
from outlay.simulator.server_tools import DEFAULT_USES, RESULT_TOKENS

from .test_providers import HELLO, HELLO_TOKENS, call, sse

SEARCH = {"type": "web_search_20250305", "name": "web_search"}


def claude(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": HELLO, **extra}


@pytest.mark.parametrize(("asked", "account", "reported"), [
    (None, None, "default"), ("auto", None, "default"), ("auto", "priority", "priority"),
    ("flex", "priority", "flex"), ("priority", None, "priority"),
])
async def test_openai_answers_name_the_tier_they_ran_in(
        asked: str | None, account: str | None, reported: str) -> None:
    sim = SimulatedUpstream(tiers={"openai": account} if account else {})
    body: dict[str, Any] = {"model": "gpt-5", "messages": HELLO}
    if asked:
        body["service_tier"] = asked
    _, _, raw = await call(body, sim=sim)
    assert ChatCompletion.model_validate_json(raw).service_tier == reported
    _, _, raw = await call({**body, "input": "hi"} | {"messages": None}, "/responses", sim=sim)
    assert Response.model_validate_json(raw).service_tier == reported


async def test_anthropic_runs_auto_on_the_accounts_priority_capacity() -> None:
    sim = SimulatedUpstream(tiers={"anthropic": "priority"})
    _, _, raw = await call(claude(), "/v1/messages", "anthropic", sim=sim)
    assert Message.model_validate_json(raw).usage.service_tier == "priority"
    _, _, raw = await call(claude(service_tier="standard_only"), "/v1/messages", "anthropic",
                           sim=sim)
    assert Message.model_validate_json(raw).usage.service_tier == "standard"


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_web_search_uses_every_use_allowed(stream: bool) -> None:
    body = claude(tools=[{**SEARCH, "max_uses": 4},
                         {"type": "web_fetch_20250910", "name": "web_fetch"}], stream=stream)
    _, _, raw = await call(body, "/v1/messages", "anthropic")
    uses = 4 + DEFAULT_USES
    # each use's iteration reads the prompt again, with every result so far
    total = sum(HELLO_TOKENS + i * RESULT_TOKENS for i in range(uses + 1))
    if not stream:
        message = Message.model_validate_json(raw)
        assert message.usage.server_tool_use is not None
        assert message.usage.server_tool_use.web_search_requests == 4
        assert message.usage.input_tokens == total
        assert [b.type for b in message.content].count("server_tool_use") == uses
        return
    events = [TypeAdapter(RawMessageStreamEvent).validate_json(data) for name, data in sse(raw)
              if name != "ping"]
    (final,) = [e for e in events if e.type == "message_delta"]
    assert final.usage.input_tokens == total
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 4


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_built_in_tools_make_every_call_allowed(stream: bool) -> None:
    tools = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]
    body = {"model": "gpt-5", "input": "hi", "tools": tools, "max_tool_calls": 3,
            "stream": stream}
    _, _, raw = await call(body, "/responses")
    if stream:
        events = [TypeAdapter(ResponseStreamEvent).validate_json(d) for _, d in sse(raw)]
        final = events[-1]
        assert final.type == "response.completed"
        response = final.response
    else:
        response = Response.model_validate_json(raw)
    kinds = [item.type for item in response.output]
    assert kinds == ["web_search_call", "code_interpreter_call", "web_search_call", "message"]
    assert response.usage is not None
    assert response.usage.input_tokens > 4 * 3  # four iterations of the prompt


async def test_a_sim_max_model_bills_every_token_allowed() -> None:
    _, _, raw = await call({"model": "sim-max-gpt", "messages": HELLO,
                            "max_completion_tokens": 5000})
    answer = ChatCompletion.model_validate_json(raw)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 5000
    assert answer.choices[0].finish_reason == "length"
    _, _, raw = await call({"model": "sim-max-gpt", "input": "hi"}, "/responses")
    response = Response.model_validate_json(raw)
    assert response.usage is not None
    assert response.usage.output_tokens == MAX_DEFAULT_OUTPUT_TOKENS
    _, _, raw = await call(claude(model="sim-max-claude", max_tokens=128_000), "/v1/messages",
                           "anthropic")
    assert json.loads(raw)["usage"]["output_tokens"] == 128_000
