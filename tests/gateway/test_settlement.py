"""After the call: a reservation settles to the reported usage, is voided when the provider did
no work, and is charged in full when what was used cannot be known (SPEC §3)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import orjson
import pytest

from outlay.policy.money import usd_to_micros

from .fakes import (
    CHAT,
    MESSAGE,
    SSE_HEADERS,
    Outlay,
    Reply,
    anthropic_answer,
    anthropic_stream,
    error_of,
    openai_answer,
    openai_stream,
    read_at_least,
    read_rest,
)

# a stream whose agent asks for usage gets OpenAI's byte stream unchanged
USAGE_STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

BUDGET = {"budgets": [{"usd": 10, "period": "day"}]}
# Reported usage stays within what the reservation allows ("hi" and max_tokens 10), as a real
# provider's would: the store never settles a call above what it reserved.


async def spend(outlay: Outlay, scope: str = "agent:agent-a") -> tuple[str, str]:
    """(spent_usd, reserved_usd) of a scope's budget."""
    budget = await outlay.budget(scope)
    return budget["spent_usd"], budget["reserved_usd"]


async def last_entry(outlay: Outlay, request_id: str) -> dict[str, Any]:
    entry = (await outlay.audit(limit=1))[0]
    assert entry["request_id"] == request_id
    return entry


async def test_answer_settles_to_its_usage(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(body=openai_answer(prompt=25, completion=5)))
    resp = await outlay.chat(key["key"])
    assert resp.status == 200
    cost = "0.000035"  # 25 x 1 + 5 x 2 micro-USD
    assert resp.headers["X-Outlay-Cost-USD"] == cost
    assert await spend(outlay) == (cost, "0")
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert entry["settlement"] == "settled"
    assert entry["cost_usd"] == cost
    assert entry["spent_usd"] == cost
    assert entry["status"] == 200
    usage = await outlay.usage("agent:agent-a")
    assert usage["spend_by_model"] == {"test-gpt": cost}
    assert usage["spend_by_vendor"] == {"openai": cost}


async def test_cached_input_is_priced_as_cached(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    body = openai_answer(prompt=30, completion=0).replace(
        b'"total_tokens"', b'"prompt_tokens_details":{"cached_tokens":12},"total_tokens"')
    outlay.upstream.script(Reply(body=body))
    resp = await outlay.chat(key["key"])
    # test-gpt has no cached price: cached input costs what input costs
    assert resp.headers["X-Outlay-Cost-USD"] == "0.00003"


async def test_anthropic_answer_settles_to_its_usage(outlay: Outlay,
                                                     key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(body=anthropic_answer(input_tokens=30, output_tokens=6)))
    resp = await outlay.messages(key["key"])
    assert resp.status == 200
    assert resp.headers["X-Outlay-Cost-USD"] == "0.00018"  # 30 x 3 + 6 x 15
    assert await spend(outlay) == ("0.00018", "0")


async def test_anthropic_cache_writes_are_reserved_for_and_charged_at_their_price(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    text = "x" * 400
    body = {**MESSAGE, "system": [{"type": "text", "text": text,
                                   "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 100,
             "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                "ephemeral_1h_input_tokens": 100},
             "output_tokens": 6}
    answer = orjson.loads(anthropic_answer())
    outlay.upstream.script(Reply(body=orjson.dumps({**answer, "usage": usage})))
    resp = await outlay.messages(key["key"], body)
    assert resp.status == 200
    # 5 x 3 + 100 x 6 (an hour's cache write: 2 x input) + 6 x 15
    assert resp.headers["X-Outlay-Cost-USD"] == "0.000705"
    assert await spend(outlay) == ("0.000705", "0")


async def test_provider_refusal_voids(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(status=429, body=b'{"error": {"message": "slow down"}}'))
    resp = await outlay.chat(key["key"])
    assert resp.status == 429
    assert "X-Outlay-Cost-USD" not in resp.headers
    assert await spend(outlay) == ("0", "0")
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert (entry["settlement"], entry["cost_usd"], entry["status"]) == ("void", "0", 429)


async def test_provider_refusal_of_a_stream_voids(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(status=400, body=b'{"error": {"message": "bad"}}'))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    assert resp.status == 400
    assert await resp.read() == b'{"error": {"message": "bad"}}'
    assert await spend(outlay) == ("0", "0")


async def test_unreachable_upstream_voids(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(unreachable=True))
    resp = await outlay.chat(key["key"])
    assert resp.status == 502
    assert error_of(await resp.json(), "openai")["code"] == "upstream_unavailable"
    assert await spend(outlay) == ("0", "0")
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert (entry["settlement"], entry["cost_usd"], entry["status"]) == ("void", "0", 502)


async def test_connection_lost_after_sending_is_charged_in_full(outlay: Outlay,
                                                                key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(broken=True))
    resp = await outlay.chat(key["key"])
    assert resp.status == 502
    assert error_of(await resp.json(), "openai")["code"] == "upstream_unavailable"
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert (entry["settlement"], entry["status"]) == ("unsettled", 502)
    assert usd_to_micros(entry["cost_usd"]) == usd_to_micros(entry["reserved_usd"]) > 0
    assert await spend(outlay) == (entry["reserved_usd"], "0")


async def test_answer_broken_mid_body_is_charged_in_full(outlay: Outlay,
                                                         key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(body=openai_answer(), break_after=0))
    resp = await outlay.chat(key["key"])
    assert resp.status == 502
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    assert error_of(await resp.json(), "openai")["code"] == "upstream_unavailable"
    assert outlay.upstream.responses[-1].closed
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert (entry["settlement"], entry["status"]) == ("unsettled", 502)
    assert entry["cost_usd"] == entry["reserved_usd"]
    assert await spend(outlay) == (entry["reserved_usd"], "0")


async def test_answer_without_usage_is_charged_what_it_can_have_used(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    body = b'{"id": "x", "choices": []}'
    outlay.upstream.script(Reply(body=body))
    resp = await outlay.chat(key["key"], {**CHAT, "max_tokens": 100})
    assert resp.status == 200
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert entry["settlement"] == "settled_estimate"
    # the input bound, and at most a token per byte shown (plus 16 unseen): 40 of the 100
    # output tokens held, at 2 micro-USD each
    shown = len(body) + 16
    assert usd_to_micros(entry["cost_usd"]) == \
        usd_to_micros(entry["reserved_usd"]) - (100 - shown) * 2


async def test_stream_with_usage_settles_to_it(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=(20, 8))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    resp = await outlay.chat(key["key"], USAGE_STREAM)
    data, cut = await read_rest(resp)
    assert not cut
    assert data == b"".join(chunks)
    assert await spend(outlay) == ("0.000036", "0")  # 20 x 1 + 8 x 2
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert (entry["settlement"], entry["cost_usd"]) == ("settled", "0.000036")


async def test_anthropic_stream_settles_to_its_usage(outlay: Outlay,
                                                     key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    # usage arrives in two pieces: input on message_start, output on message_delta
    chunks = anthropic_stream(input_tokens=30, output_tokens=6)
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    resp = await outlay.messages(key["key"], {**MESSAGE, "stream": True})
    data, cut = await read_rest(resp)
    assert not cut
    assert data == b"".join(chunks)
    assert await spend(outlay) == ("0.00018", "0")
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert (entry["settlement"], entry["cost_usd"]) == ("settled", "0.00018")


async def test_stream_split_mid_event_still_settles(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    whole = b"".join(openai_stream(usage=(20, 8)))
    pieces = [whole[i:i + 7] for i in range(0, len(whole), 7)]
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=pieces))
    resp = await outlay.chat(key["key"], USAGE_STREAM)
    assert (await read_rest(resp))[0] == whole
    assert await spend(outlay) == ("0.000036", "0")


async def test_stream_without_usage_is_charged_what_it_showed(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream(usage=None)))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True, "max_tokens": 100})
    _, cut = await read_rest(resp)
    assert not cut
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert entry["settlement"] == "settled_estimate"
    # "Hel" and "lo": 5 bytes of output shown, plus 16 unseen tokens, of the 100 held
    held = usd_to_micros(entry["reserved_usd"])
    assert usd_to_micros(entry["cost_usd"]) == held - (100 - 21) * 2
    assert await spend(outlay) == (entry["cost_usd"], "0")


async def test_stream_broken_mid_way_is_charged_in_full(outlay: Outlay,
                                                        key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=(20, 8))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, break_after=1))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    assert resp.status == 200
    data, cut = await read_rest(resp)
    assert data == chunks[0]
    assert cut, "a stream the provider broke must not look complete to the client"
    assert outlay.upstream.responses[-1].closed
    entry = await last_entry(outlay, resp.headers["X-Outlay-Request-Id"])
    assert entry["settlement"] == "unsettled"
    assert entry["cost_usd"] == entry["reserved_usd"]
    assert await spend(outlay) == (entry["reserved_usd"], "0")


async def test_chunks_pass_through_as_they_arrive(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=(20, 8))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    resp = await outlay.chat(key["key"], USAGE_STREAM)
    assert resp.status == 200

    first = await read_at_least(resp, len(chunks[0]))
    assert first == chunks[0]
    assert outlay.upstream.paused.is_set()
    assert not outlay.upstream.release.is_set()  # the provider has not sent the rest yet
    spent, reserved = await spend(outlay)
    assert spent == "0"
    assert usd_to_micros(reserved) > 0  # held while the call is in flight

    outlay.upstream.release.set()
    rest, cut = await read_rest(resp)
    assert not cut
    assert first + rest == b"".join(chunks)
    assert await spend(outlay) == ("0.000036", "0")


async def test_client_gone_mid_stream_leaves_nothing_held(outlay: Outlay,
                                                          key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=(20, 8))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    rid = resp.headers["X-Outlay-Request-Id"]
    await read_at_least(resp, len(chunks[0]))
    resp.close()  # the agent hangs up
    outlay.upstream.release.set()
    # whether the gateway notices before the provider finishes or not, the rest of the
    # stream is read for its usage: charged that, and nothing stays held
    outcome = await outlay.store.wait_settled(rid)
    assert (outcome.settled, outcome.cost_micros) == ("settled", 36)
    assert await spend(outlay) == ("0.000036", "0")


async def test_an_agent_hanging_up_after_the_last_event_is_charged_its_usage_quietly(
        outlay: Outlay, key: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    # SDKs stop reading at [DONE] and may close before the stream's end reaches them
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=(20, 8))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=len(chunks)))
    resp = await outlay.chat(key["key"], USAGE_STREAM)
    rid = resp.headers["X-Outlay-Request-Id"]
    assert await read_at_least(resp, len(b"".join(chunks))) == b"".join(chunks)
    resp.close()
    await asyncio.sleep(0.05)  # the gateway sees the hang-up before the provider's end
    with caplog.at_level(logging.ERROR):
        outlay.upstream.release.set()
        outcome = await outlay.store.wait_settled(rid)
    assert (outcome.settled, outcome.cost_micros) == ("settled", 36)
    assert await spend(outlay) == ("0.000036", "0")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_plain_stream_hides_the_usage_chunk_outlay_asked_for(
        outlay: Outlay, key: dict[str, Any]) -> None:
    """Code written for OpenAI's default stream reads choices[0] of every chunk: the
    choice-less usage chunk Outlay added must not reach it, yet the call still settles."""
    await outlay.set_policy("agent:agent-a", BUDGET)
    chunks = openai_stream(usage=(20, 8))
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True})
    body, cut = await read_rest(resp)
    assert not cut
    sent = outlay.upstream.last_json()
    assert sent["stream_options"] == {"include_usage": True}
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    assert events
    assert all(json.loads(e[6:])["choices"] for e in events)
    assert body.endswith(b"data: [DONE]\n\n")
    assert await spend(outlay) == ("0.000036", "0")
