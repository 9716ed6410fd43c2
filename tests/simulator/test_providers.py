"""The simulated provider's answers, checked against the official SDKs' own types."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from typing import Any

import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from outlay.simulator.common import REPLY_TOKENS
from outlay.simulator.providers import SimulatedUpstream
from outlay.upstream import UpstreamBroken, UpstreamRequest

HELLO = [{"role": "user", "content": "Hello, world!"}]  # 13 bytes: ceil(13/4) + 3 = 7 tokens
HELLO_TOKENS = 7


async def call(
    body: dict[str, Any] | bytes,
    path: str = "/chat/completions",
    provider: str = "openai",
    method: str = "POST",
    sim: SimulatedUpstream | None = None,
) -> tuple[int, dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stream = isinstance(body, dict) and bool(body.get("stream"))
    upstream = sim or SimulatedUpstream()
    response = await upstream.send(UpstreamRequest(provider, method, path, {}, raw, stream))
    try:
        content = await response.read()
    finally:
        await response.close()
    return response.status, {k.lower(): v for k, v in response.headers.items()}, content


def sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of every server-sent event, in order."""
    events: list[tuple[str | None, str]] = []
    assert raw.endswith(b"\n\n")
    for block in raw.decode().split("\n\n")[:-1]:
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append((name, "\n".join(data)))
    return events


# --- OpenAI chat completions ---------------------------------------------------------------


async def test_chat_completion_parses_and_reports_usage() -> None:
    status, headers, body = await call({"model": "gpt-4o-mini", "messages": HELLO})
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    answer = ChatCompletion.model_validate_json(body)
    assert answer.model == "gpt-4o-mini"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == HELLO_TOKENS
    assert answer.usage.completion_tokens == REPLY_TOKENS
    assert answer.usage.total_tokens == HELLO_TOKENS + REPLY_TOKENS


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_tokens": 5}, 5),
        ({"max_completion_tokens": 3, "max_tokens": 9}, 3),
        ({"max_tokens": 1000}, REPLY_TOKENS),
    ],
)
async def test_chat_respects_the_output_limit(limits: dict[str, int], expected: int) -> None:
    _, _, body = await call({"model": "m", "messages": HELLO, **limits})
    answer = ChatCompletion.model_validate_json(body)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == expected
    assert len((answer.choices[0].message.content or "").split()) == expected
    assert answer.choices[0].finish_reason == ("stop" if expected == REPLY_TOKENS else "length")


async def test_input_tokens_count_every_message_and_never_exceed_utf8_bytes_plus_overhead() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},  # 9 bytes -> 3 + 3
        {"role": "user", "content": [{"type": "text", "text": "héllo 🌍"}]},  # 11 bytes -> 3 + 3
    ]
    _, _, body = await call({"model": "m", "messages": messages})
    usage = ChatCompletion.model_validate_json(body).usage
    assert usage is not None
    assert usage.prompt_tokens == 12


async def test_chat_stream_sends_deltas_then_the_usage_chunk_then_done() -> None:
    request = {
        "model": "gpt-4o-mini",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 6,
    }
    status, headers, body = await call(request)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = sse(body)
    assert events[-1] == (None, "[DONE]")
    chunks = [ChatCompletionChunk.model_validate_json(data) for _, data in events[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) == 6
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "length"
    assert all(reason is None for reason in finishing[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (HELLO_TOKENS, 6)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert len({chunk.id for chunk in chunks}) == 1


async def test_chat_stream_without_include_usage_carries_no_usage() -> None:
    _, _, body = await call({"model": "m", "messages": HELLO, "stream": True})
    payloads = [json.loads(data) for _, data in sse(body)[:-1]]
    assert all("usage" not in payload for payload in payloads)
    assert all(payload["choices"] for payload in payloads)


async def test_stream_options_without_stream_is_refused_as_the_real_api_does() -> None:
    status, _, body = await call(
        {"model": "m", "messages": HELLO, "stream_options": {"include_usage": True}}
    )
    assert status == 400
    assert json.loads(body)["error"]["param"] == "stream_options"


# --- OpenAI completions, embeddings, models ------------------------------------------------


async def test_legacy_completion_defaults_to_16_tokens() -> None:
    _, _, body = await call({"model": "m", "prompt": "Say hi"}, "/completions")
    answer = Completion.model_validate_json(body)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 2  # raw prompts carry no message overhead
    assert answer.usage.completion_tokens == 16
    assert answer.choices[0].finish_reason == "length"


async def test_legacy_completion_stream_ends_with_usage_and_done() -> None:
    request = {
        "model": "m",
        "prompt": ["ab", "cd"],
        "max_tokens": 30,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _, _, body = await call(request, "/completions")
    events = sse(body)
    assert events[-1] == (None, "[DONE]")
    payloads = [json.loads(data) for _, data in events[:-1]]
    # As from the real API, chunks before the last carry "finish_reason": null, which the
    # SDK builds without validation; the finishing and usage chunks validate strictly.
    text = "".join(p["choices"][0]["text"] for p in payloads if p["choices"])
    assert len(text.split()) == REPLY_TOKENS
    finishing = Completion.model_validate(payloads[-2])
    assert finishing.choices[0].finish_reason == "stop"
    usage = Completion.model_validate(payloads[-1]).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, REPLY_TOKENS)


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    request = {"model": "text-embedding-3-small", "input": ["alpha", "beta", "alpha"]}
    _, _, body = await call(request, "/embeddings")
    answer = CreateEmbeddingResponse.model_validate_json(body)
    vectors = [item.embedding for item in answer.data]
    assert [item.index for item in answer.data] == [0, 1, 2]
    assert len(vectors[0]) == 8
    assert vectors[0] == vectors[2] != vectors[1]
    assert math.isclose(math.fsum(v * v for v in vectors[1]), 1.0)
    assert answer.usage.prompt_tokens == 5  # alpha 2, beta 1, alpha 2


async def test_embeddings_in_base64_decode_to_the_float_vector() -> None:
    plain = {"model": "m", "input": "alpha", "dimensions": 16}
    _, _, floats = await call(plain, "/embeddings")
    _, _, packed = await call({**plain, "encoding_format": "base64"}, "/embeddings")
    expected = json.loads(floats)["data"][0]["embedding"]
    raw = base64.b64decode(json.loads(packed)["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 16
    assert all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
        for a, b in zip(decoded, expected, strict=True)
    )


async def test_models_list() -> None:
    status, _, body = await call(b"", "/models", method="GET")
    assert status == 200
    page = json.loads(body)
    assert page["object"] == "list"
    models = [Model.model_validate(item) for item in page["data"]]
    assert "gpt-4o-mini" in {model.id for model in models}


# --- OpenAI responses ----------------------------------------------------------------------


async def test_response_parses_with_usage() -> None:
    request = {"model": "gpt-4o-mini", "input": "Hello, world!", "instructions": "Be brief."}
    _, _, body = await call(request, "/responses")
    answer = Response.model_validate_json(body)
    assert answer.status == "completed"
    assert answer.output_text.split()[0] == "This"
    assert answer.usage is not None
    assert answer.usage.input_tokens == HELLO_TOKENS + 6
    assert answer.usage.output_tokens == REPLY_TOKENS


async def test_response_cut_by_max_output_tokens_is_incomplete() -> None:
    _, _, body = await call({"model": "m", "input": HELLO, "max_output_tokens": 16}, "/responses")
    answer = Response.model_validate_json(body)
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (HELLO_TOKENS, 16)


async def test_response_refuses_an_output_limit_below_16() -> None:
    status, _, body = await call({"model": "m", "input": "x", "max_output_tokens": 8}, "/responses")
    assert status == 400
    assert json.loads(body)["error"]["param"] == "max_output_tokens"


async def test_response_stream_events_carry_usage_on_completion() -> None:
    _, _, body = await call({"model": "m", "input": HELLO, "stream": True}, "/responses")
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events = [(name, adapter.validate_json(data)) for name, data in sse(body)]
    assert all(name == event.type for name, event in events)
    assert [event.sequence_number for _, event in events] == list(range(len(events)))
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names.count("response.output_text.delta") == REPLY_TOKENS
    assert names[-1] == "response.completed"
    created, completed = events[0][1], events[-1][1]
    assert created.response.usage is None
    assert completed.response.usage.input_tokens == HELLO_TOKENS
    assert completed.response.usage.output_tokens == REPLY_TOKENS
    text = "".join(event.delta for name, event in events if name == "response.output_text.delta")
    assert text == completed.response.output_text


# --- Anthropic -----------------------------------------------------------------------------


async def test_anthropic_message_parses_with_usage() -> None:
    request = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": HELLO,
    }
    status, headers, body = await call(request, "/v1/messages", "anthropic")
    assert status == 200
    assert headers["request-id"].startswith("req_")
    message = Message.model_validate_json(body)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == HELLO_TOKENS + 6
    assert message.usage.output_tokens == REPLY_TOKENS


async def test_anthropic_max_tokens_is_respected_and_required() -> None:
    request = {"model": "m", "max_tokens": 4, "messages": HELLO}
    _, _, body = await call(request, "/v1/messages", "anthropic")
    message = Message.model_validate_json(body)
    assert (message.usage.output_tokens, message.stop_reason) == (4, "max_tokens")

    status, _, body = await call({"model": "m", "messages": HELLO}, "/v1/messages", "anthropic")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


async def test_anthropic_stream_has_the_real_event_sequence() -> None:
    request = {"model": "m", "max_tokens": 5, "messages": HELLO, "stream": True}
    _, headers, body = await call(request, "/v1/messages", "anthropic")
    assert headers["content-type"].startswith("text/event-stream")
    raw = sse(body)
    names = [name for name, _ in raw]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    events = [adapter.validate_json(data) for name, data in raw if name != "ping"]
    assert all(
        event.type == name for event, name in zip(events, names[:2] + names[3:], strict=True)
    )
    assert events[0].message.usage.input_tokens == HELLO_TOKENS
    assert events[-2].usage.output_tokens == 5
    assert events[-2].delta.stop_reason == "max_tokens"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta").split() == [
        "This",
        "is",
        "a",
        "simulated",
        "reply",
    ]


async def test_count_tokens_matches_the_message_usage() -> None:
    request = {"model": "m", "system": [{"type": "text", "text": "Be brief."}], "messages": HELLO}
    _, _, counted = await call(request, "/v1/messages/count_tokens", "anthropic")
    _, _, sent = await call({**request, "max_tokens": 10}, "/v1/messages", "anthropic")
    count = MessageTokensCount.model_validate_json(counted)
    assert count.input_tokens == Message.model_validate_json(sent).usage.input_tokens == 13


# --- errors and failure paths --------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "path", "method"),
    [
        ("openai", "/v1/chat/completions", "POST"),
        ("openai", "/chat/completions", "GET"),
        ("anthropic", "/messages", "POST"),
        ("anthropic", "/v1/complete", "POST"),
    ],
)
async def test_unknown_paths_are_404_in_the_provider_shape(
    provider: str, path: str, method: str
) -> None:
    status, _, body = await call({"model": "m"}, path, provider, method)
    assert status == 404
    error = json.loads(body)
    if provider == "openai":
        assert error["error"]["type"] == "invalid_request_error"
    else:
        assert error["type"] == "error"
        assert error["error"]["type"] == "not_found_error"


async def test_bad_json_is_400_in_the_provider_shape() -> None:
    status, _, body = await call(b"{not json", "/chat/completions")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    status, _, body = await call(b"[1, 2]", "/v1/messages", "anthropic")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "openai_type", "anthropic_type"),
    [
        (500, "server_error", "api_error"),
        (429, "requests", "rate_limit_error"),
        (400, "invalid_request_error", "invalid_request_error"),
    ],
)
async def test_sim_error_models_answer_that_status(
    status: int, openai_type: str, anthropic_type: str
) -> None:
    model = f"sim-error-{status}"
    got, _, body = await call({"model": model, "messages": HELLO})
    assert (got, json.loads(body)["error"]["type"]) == (status, openai_type)
    request = {"model": model, "max_tokens": 5, "messages": HELLO, "stream": True}
    got, headers, body = await call(request, "/v1/messages", "anthropic")
    assert headers["content-type"] == "application/json"
    assert (got, json.loads(body)["error"]["type"]) == (status, anthropic_type)


@pytest.mark.parametrize(
    ("provider", "path", "body"),
    [
        ("openai", "/chat/completions", {"messages": HELLO}),
        ("openai", "/embeddings", {"input": "x"}),
        ("openai", "/responses", {"input": "x"}),
        ("anthropic", "/v1/messages", {"messages": HELLO, "max_tokens": 5}),
    ],
)
async def test_sim_break_loses_a_plain_call_after_sending(
    provider: str, path: str, body: dict[str, Any]
) -> None:
    with pytest.raises(UpstreamBroken):
        await call({"model": "sim-break", **body}, path, provider)


@pytest.mark.parametrize(
    ("provider", "path", "body"),
    [
        (
            "openai",
            "/chat/completions",
            {"messages": HELLO, "stream_options": {"include_usage": True}},
        ),
        ("openai", "/responses", {"input": "x"}),
        ("anthropic", "/v1/messages", {"messages": HELLO, "max_tokens": 50}),
    ],
)
async def test_sim_break_cuts_a_stream_part_way(
    provider: str, path: str, body: dict[str, Any]
) -> None:
    raw = json.dumps({"model": "sim-break", "stream": True, **body}).encode()
    response = await SimulatedUpstream().send(
        UpstreamRequest(provider, "POST", path, {}, raw, True)
    )
    assert response.status == 200
    received: list[bytes] = []

    async def collect() -> None:
        async for chunk in response.iter_chunks():
            received.append(chunk)

    with pytest.raises(UpstreamBroken):
        await collect()
    await response.close()
    assert len(received) >= 2
    assert b"[DONE]" not in b"".join(received)
    assert b"message_stop" not in b"".join(received)


async def test_latency_holds_a_call_in_flight() -> None:
    sim = SimulatedUpstream(latency_ms=50)
    request = UpstreamRequest(
        "openai",
        "POST",
        "/chat/completions",
        {},
        json.dumps({"model": "m", "messages": HELLO}).encode(),
        False,
    )
    pending = asyncio.ensure_future(sim.send(request))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done()
    response = await pending
    assert response.status == 200
    await response.close()


async def test_closing_a_stream_stops_it() -> None:
    raw = json.dumps({"model": "m", "messages": HELLO, "stream": True}).encode()
    response = await SimulatedUpstream().send(
        UpstreamRequest("openai", "POST", "/chat/completions", {}, raw, True)
    )
    chunks = response.iter_chunks()
    await anext(chunks)
    await response.close()
    assert [chunk async for chunk in chunks] == []


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        SimulatedUpstream(latency_ms=-1)
