"""What reaches the provider: the right path, never the agent's key, and a body patched so the
call has a bounded cost (max_tokens) and a stream reports its usage (include_usage)."""

from __future__ import annotations

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
    anthropic_stream,
    openai_stream,
    read_rest,
)

ROUTES = [
    ("/v1/chat/completions", CHAT, "openai", "/chat/completions"),
    ("/v1/completions", {"model": "test-gpt", "prompt": "hi", "max_tokens": 5},
     "openai", "/completions"),
    ("/v1/embeddings", {"model": "test-gpt", "input": "hi"}, "openai", "/embeddings"),
    ("/v1/responses", {"model": "test-gpt", "input": "hi", "max_output_tokens": 5},
     "openai", "/responses"),
    ("/v1/messages", MESSAGE, "anthropic", "/v1/messages"),
    ("/v1/messages/count_tokens", {"model": "test-claude", "messages": MESSAGE["messages"]},
     "anthropic", "/v1/messages/count_tokens"),
]
HOSTILE_HEADERS = {
    "Cookie": "session=agent", "OpenAI-Organization": "org-agent", "X-Forwarded-For": "1.2.3.4",
    "Proxy-Authorization": "Basic Zm9vOmJhcg==",
}


@pytest.mark.parametrize(("path", "body", "provider", "upstream_path"), ROUTES)
async def test_route_reaches_its_provider_without_the_agent_key(
    outlay: Outlay, key: dict[str, Any], path: str, body: dict[str, Any], provider: str,
    upstream_path: str,
) -> None:
    secret = key["key"]
    resp = await outlay.client.post(
        f"{path}?trace=1", json=body,
        headers={"Authorization": f"Bearer {secret}", "x-api-key": secret, **HOSTILE_HEADERS})
    assert resp.status == 200, await resp.text()
    sent = outlay.upstream.last
    assert (sent.provider, sent.method, sent.path, sent.query) == (
        provider, "POST", upstream_path, "trace=1")
    names = {name.lower() for name in sent.headers}
    assert names.isdisjoint({"authorization", "x-api-key", "cookie", "openai-organization",
                             "x-forwarded-for", "proxy-authorization"})
    assert all(secret not in value for value in sent.headers.values())
    assert secret.encode() not in sent.body
    assert sent.stream is False


async def test_x_api_key_on_an_openai_route_is_not_forwarded(outlay: Outlay,
                                                             key: dict[str, Any]) -> None:
    resp = await outlay.client.post("/v1/chat/completions", json=CHAT,
                                    headers={"x-api-key": key["key"]})
    assert resp.status == 200
    assert "x-api-key" not in {n.lower() for n in outlay.upstream.last.headers}


async def test_provider_headers_the_sdks_need_are_forwarded(outlay: Outlay,
                                                            key: dict[str, Any]) -> None:
    resp = await outlay.messages(key["key"], headers={
        "anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024",
        "Idempotency-Key": "idem-1"})
    assert resp.status == 200
    sent = {k.lower(): v for k, v in outlay.upstream.last.headers.items()}
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent["anthropic-beta"] == "tools-2024"
    assert sent["idempotency-key"] == "idem-1"
    assert sent["content-type"] == "application/json"


async def test_a_body_that_needs_no_patch_is_forwarded_byte_for_byte(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    raw = b'{"model":"test-gpt",  "max_tokens": 7, "messages":[{"role":"user","content":"hi"}]}'
    resp = await outlay.client.post(
        "/v1/chat/completions", data=raw,
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"})
    assert resp.status == 200
    assert outlay.upstream.last.body == raw


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "test-gpt", "messages": CHAT["messages"]}),
    ("/v1/chat/completions", {"model": "o1", "messages": CHAT["messages"]}),
    ("/v1/completions", {"model": "test-gpt", "prompt": "hi"}),
    ("/v1/responses", {"model": "test-gpt", "input": "hi"}),
    ("/v1/messages", {"model": "test-claude", "messages": MESSAGE["messages"]}),
])
async def test_a_request_without_a_maximum_goes_out_as_it_came(
    outlay: Outlay, key: dict[str, Any], path: str, body: dict[str, Any],
) -> None:
    # the bound is the provider's own default; the request's meaning is not changed
    resp = await outlay.post(path, key["key"], body)
    assert resp.status == 200, await resp.text()
    assert outlay.upstream.last_json() == body


async def test_completions_without_max_tokens_reserve_the_providers_16(
    outlay: Outlay, key: dict[str, Any]
) -> None:
    resp = await outlay.post("/v1/completions", key["key"], {"model": "test-gpt", "prompt": "hi"})
    assert resp.status == 200
    entry = (await outlay.audit(limit=1))[0]
    # the input bound of "hi" at $1/M and 16 output tokens at $2/M, not the model's 100
    input_bound = usd_to_micros(entry["reserved_usd"]) - 16 * 2
    assert 0 < input_bound < 30


async def test_max_completion_tokens_given_is_kept(outlay: Outlay, key: dict[str, Any]) -> None:
    body = {"model": "test-gpt", "messages": CHAT["messages"], "max_completion_tokens": 9}
    await outlay.chat(key["key"], body)
    assert outlay.upstream.last_json() == body


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_openai_streams_ask_for_usage(outlay: Outlay, key: dict[str, Any],
                                            path: str) -> None:
    body = ({**CHAT} if path == "/v1/chat/completions"
            else {"model": "test-gpt", "prompt": "hi", "max_tokens": 5})
    body |= {"stream": True, "stream_options": {"include_obfuscation": False}}
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream()))
    resp = await outlay.post(path, key["key"], body)
    await read_rest(resp)
    sent = outlay.upstream.last
    assert sent.stream is True
    forwarded = orjson.loads(sent.body)
    assert forwarded["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert {k: v for k, v in forwarded.items() if k != "stream_options"} == {
        k: v for k, v in body.items() if k != "stream_options"}


async def test_include_usage_false_is_overridden(outlay: Outlay, key: dict[str, Any]) -> None:
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream()))
    resp = await outlay.chat(key["key"], {**CHAT, "stream": True,
                                          "stream_options": {"include_usage": False}})
    await read_rest(resp)
    assert outlay.upstream.last_json()["stream_options"] == {"include_usage": True}


async def test_no_stream_options_without_a_stream(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.chat(key["key"], {**CHAT, "stream": False})
    assert "stream_options" not in outlay.upstream.last_json()
    assert outlay.upstream.last.stream is False


async def test_anthropic_stream_body_is_not_given_openai_fields(outlay: Outlay,
                                                                key: dict[str, Any]) -> None:
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=anthropic_stream()))
    resp = await outlay.messages(key["key"], {**MESSAGE, "stream": True})
    await read_rest(resp)
    assert outlay.upstream.last.stream is True
    assert outlay.upstream.last_json() == {**MESSAGE, "stream": True}
