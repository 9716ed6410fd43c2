"""An agent that hangs up mid-stream is charged what the call cost: the rest of the stream
is read for the usage the provider reports at its end, within `server.abandoned_stream_s`
and `server.abandoned_stream_bytes`; past them, or without usage, what the stream showed is
counted (`settled_estimate`), never less than what was generated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from outlay.policy.money import usd_to_micros
from outlay.state.base import Outcome

from .fakes import (
    CHAT,
    MESSAGE,
    SSE_HEADERS,
    FakeResponse,
    Outlay,
    Reply,
    anthropic_event,
    anthropic_stream,
    openai_stream,
    read_at_least,
    sse,
)

BUDGET = {"budgets": [{"usd": 10, "period": "day"}]}
UNSHOWN = 16  # tokens a model may write that show no text


def responses_stream(input_tokens: int, output_tokens: int) -> list[bytes]:
    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\n".encode() + sse({"type": kind, **data})

    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens,
             "total_tokens": input_tokens + output_tokens}
    return [event("response.created", response={"id": "resp_1", "status": "in_progress"}),
            event("response.output_text.delta", delta="Hel"),
            event("response.output_text.delta", delta="lo"),
            event("response.completed", response={
                "id": "resp_1", "object": "response", "status": "completed",
                "model": "test-gpt", "output": [], "usage": usage})]


def text_chunk(text: str) -> bytes:
    return sse({"id": "c1", "object": "chat.completion.chunk", "model": "test-gpt",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


async def hang_up_after_first_chunk(outlay: Outlay, resp: Any, first: bytes) -> str:
    rid: str = resp.headers["X-Outlay-Request-Id"]
    assert (await read_at_least(resp, len(first))).startswith(first)
    resp.close()  # the agent stops reading and closes, as a `break` out of an SDK stream does
    return rid


async def outcome_of(outlay: Outlay, rid: str) -> tuple[Outcome, dict[str, Any]]:
    outcome = await outlay.store.wait_settled(rid, within_s=10)
    (entry,) = [e for e in await outlay.audit() if e["request_id"] == rid]
    return outcome, entry


@pytest.mark.parametrize(("path", "body", "chunks", "cost"), [
    ("/v1/chat/completions", {**CHAT, "stream": True}, openai_stream(usage=(20, 8)), 36),
    ("/v1/messages", {**MESSAGE, "stream": True},
     anthropic_stream(input_tokens=30, output_tokens=6), 30 * 3 + 6 * 15),
    ("/v1/responses", {"model": "test-gpt", "input": "hi", "max_output_tokens": 10,
                       "stream": True}, responses_stream(20, 8), 36),
], ids=["chat", "messages", "responses"])
async def test_an_agent_hanging_up_is_charged_the_usage_reported_after_it_left(
        outlay: Outlay, key: dict[str, Any], path: str, body: dict[str, Any],
        chunks: list[bytes], cost: int) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    resp = await outlay.post(path, key["key"], body, headers={"x-api-key": key["key"]})
    rid = await hang_up_after_first_chunk(outlay, resp, chunks[0])
    await asyncio.sleep(0.05)  # the gateway's connection sees the hang-up
    outlay.upstream.release.set()  # the provider goes on, and ends with its usage
    outcome, entry = await outcome_of(outlay, rid)
    assert (outcome.settled, outcome.cost_micros) == ("settled", cost)
    assert (entry["settlement"], usd_to_micros(entry["cost_usd"])) == ("settled", cost)
    assert outlay.upstream.responses[-1].closed


async def test_a_provider_that_never_ends_is_read_no_longer_than_the_time_bound(
        make_outlay: Any) -> None:
    outlay: Outlay = await make_outlay(abandoned_stream_s=0.3)
    key = await outlay.mint()
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=None)[:-1]  # "Hel", "lo"; then "ab" every 20 ms, forever
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, endless=text_chunk("ab"),
                                 every_s=0.02))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True, "max_tokens": 100})
    rid = await hang_up_after_first_chunk(outlay, resp, chunks[0])
    outcome, entry = await outcome_of(outlay, rid)
    answer: FakeResponse = outlay.upstream.responses[-1]
    assert answer.closed
    sent = answer.endless_sent
    await asyncio.sleep(0.1)
    assert answer.endless_sent == sent, "the stream is read on after its bound"
    # charged the input bound and every byte of text the provider generated, the part sent
    # after the agent left included (a token a byte at most, and a few unseen)
    shown = len("Hello") + 2 * sent
    assert shown + UNSHOWN < 100
    held = usd_to_micros(entry["reserved_usd"])
    assert outcome.settled == entry["settlement"] == "settled_estimate"
    assert usd_to_micros(entry["cost_usd"]) == held - (100 - shown - UNSHOWN) * 2


async def test_a_provider_sending_endless_bytes_is_read_no_further_than_the_byte_bound(
        make_outlay: Any) -> None:
    outlay: Outlay = await make_outlay(abandoned_stream_bytes=64 * 1024)
    key = await outlay.mint()
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=None)[:-1]
    flood = text_chunk("x" * 4000)
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, endless=flood))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True, "max_tokens": 100})
    rid = await hang_up_after_first_chunk(outlay, resp, chunks[0])
    outcome, entry = await outcome_of(outlay, rid)
    answer: FakeResponse = outlay.upstream.responses[-1]
    assert answer.closed
    # what the agent may have received before its hang-up was noticed, and the bound after
    assert answer.endless_sent * len(flood) <= 64 * 1024 + 2 * len(flood) + 1024 * 1024
    # more than the most the model may write was shown: the whole output bound, never more
    assert outcome.settled == entry["settlement"] == "settled_estimate"
    assert entry["cost_usd"] == entry["reserved_usd"]


async def test_an_anthropic_stream_that_never_ends_is_charged_its_input_and_the_output_shown(
        make_outlay: Any) -> None:
    outlay: Outlay = await make_outlay(abandoned_stream_s=0.3)
    key = await outlay.mint()
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = anthropic_stream(input_tokens=30)[:3]  # message_start, a block, "hello"
    more = anthropic_event("content_block_delta", {
        "index": 0, "delta": {"type": "text_delta", "text": "ab"}})
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, endless=more,
                                 every_s=0.02))
    resp = await outlay.messages(key["key"], {**MESSAGE, "stream": True, "max_tokens": 200})
    rid = await hang_up_after_first_chunk(outlay, resp, chunks[0])
    outcome, entry = await outcome_of(outlay, rid)
    answer: FakeResponse = outlay.upstream.responses[-1]
    assert answer.closed
    shown = len("hello") + 2 * answer.endless_sent
    assert shown + UNSHOWN < 200
    # the input Anthropic reported, and the output shown, at the model's prices
    assert outcome.settled == entry["settlement"] == "settled_estimate"
    assert usd_to_micros(entry["cost_usd"]) == 30 * 3 + (shown + UNSHOWN) * 15


async def test_reading_on_can_be_turned_off(make_outlay: Any) -> None:
    outlay: Outlay = await make_outlay(abandoned_stream_s=0)
    key = await outlay.mint()
    chunks = openai_stream(usage=None)[:-1]
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, endless=text_chunk("ab"),
                                 every_s=0.02))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True, "max_tokens": 100})
    rid = await hang_up_after_first_chunk(outlay, resp, chunks[0])
    outcome, entry = await outcome_of(outlay, rid)
    assert outlay.upstream.responses[-1].closed
    # not read on: what was shown until the hang-up was noticed, as an estimate
    assert outcome.settled == entry["settlement"] == "settled_estimate"
    assert 0 < usd_to_micros(entry["cost_usd"]) < usd_to_micros(entry["reserved_usd"])
