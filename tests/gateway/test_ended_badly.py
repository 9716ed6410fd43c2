"""Calls that end badly are charged what the provider reports, or what they can have used up
to the point they ended: never the whole hold by default (SPEC §3.3)."""

from __future__ import annotations

from typing import Any

import orjson

from outlay.policy.money import usd_to_micros

from .fakes import (
    CHAT,
    MESSAGE,
    SSE_HEADERS,
    Outlay,
    Reply,
    anthropic_event,
    anthropic_stream,
    openai_stream,
    read_rest,
    sse,
)

BUDGET = {"budgets": [{"usd": 10, "period": "day"}]}
# test-gpt: $1/M input, $2/M output; test-claude: $3/M, $15/M
RESPONSES = {"model": "test-gpt", "input": "hi", "max_output_tokens": 100}


async def settled(outlay: Outlay, resp: Any) -> dict[str, Any]:
    await read_rest(resp)
    rid = resp.headers["X-Outlay-Request-Id"]
    await outlay.store.wait_settled(rid)
    (entry,) = [e for e in await outlay.audit() if e["request_id"] == rid]
    return entry


def responses_event(kind: str, **data: Any) -> bytes:
    return f"event: {kind}\n".encode() + sse({"type": kind, **data})


def failed_response(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": "failed", "model": "test-gpt",
            "error": {"code": "server_error", "message": "The model failed."}, "output": [],
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens}}


async def test_a_stream_ending_in_response_failed_is_charged_its_usage(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = [responses_event("response.created", response={"id": "resp_1"}),
              responses_event("response.output_text.delta", delta="Hel"),
              responses_event("response.failed", response=failed_response(12, 7))]
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    resp = await outlay.post("/v1/responses", key["key"], {**RESPONSES, "stream": True})
    entry = await settled(outlay, resp)
    assert (entry["settlement"], entry["cost_usd"]) == ("settled", "0.000026")  # 12 + 7 x 2


async def test_a_failed_response_answered_whole_is_charged_its_usage(
        outlay: Outlay, key: dict[str, Any]) -> None:
    outlay.upstream.script(Reply(body=orjson.dumps(failed_response(12, 7))))
    resp = await outlay.post("/v1/responses", key["key"], RESPONSES)
    assert resp.headers["X-Outlay-Cost-USD"] == "0.000026"


async def test_an_error_event_mid_stream_is_charged_the_input_and_the_output_shown(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(("Hel", "lo"), usage=None)[:-1]  # no usage, no [DONE]
    chunks.append(sse({"error": {"message": "overloaded", "type": "server_error"}}))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True, "max_tokens": 100})
    entry = await settled(outlay, resp)
    held = usd_to_micros(entry["reserved_usd"])
    # 5 bytes of text shown and 16 tokens that show none, of the 100 held
    assert entry["settlement"] == "settled_estimate"
    assert usd_to_micros(entry["cost_usd"]) == held - (100 - 21) * 2


async def test_an_anthropic_overload_mid_stream_is_charged_the_input_it_reported(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = anthropic_stream(input_tokens=30)[:3]  # message_start, a block, "hello"
    chunks.append(anthropic_event("error", {"error": {"type": "overloaded_error",
                                                      "message": "Overloaded"}}))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    resp = await outlay.messages(key["key"], {**MESSAGE, "stream": True, "max_tokens": 200})
    entry = await settled(outlay, resp)
    # 30 input tokens reported; "hello" and 16 unseen tokens of output
    assert (entry["settlement"], usd_to_micros(entry["cost_usd"])) == (
        "settled_estimate", 30 * 3 + 21 * 15)


async def test_a_200_error_body_is_charged_the_input_bound_only(
        outlay: Outlay, key: dict[str, Any]) -> None:
    body = orjson.dumps({"error": {"message": "overloaded", "type": "server_error",
                                   "param": None, "code": None}})
    outlay.upstream.script(Reply(body=body))
    resp = await outlay.chat(key["key"], {**CHAT, "max_tokens": 100})
    assert resp.status == 200
    entry = (await outlay.audit(limit=1))[0]
    assert entry["settlement"] == "settled_estimate"
    assert usd_to_micros(entry["cost_usd"]) == usd_to_micros(entry["reserved_usd"]) - 100 * 2
    assert resp.headers["X-Outlay-Cost-USD"] == entry["cost_usd"]


async def test_a_model_that_may_reason_unseen_is_charged_its_whole_output_bound(
        outlay: Outlay, key: dict[str, Any]) -> None:
    chunks = openai_stream(("Hi",), usage=None)[:-1]
    chunks.append(sse({"error": {"message": "overloaded", "type": "server_error"}}))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    body = {"model": "o3", "messages": CHAT["messages"], "max_completion_tokens": 1000,
            "stream": True}
    entry = await settled(outlay, await outlay.chat(key["key"], body))
    # its reasoning tokens are billed though never shown: nothing bounds them but the held
    assert (entry["settlement"], entry["cost_usd"]) == ("settled_estimate", entry["reserved_usd"])
