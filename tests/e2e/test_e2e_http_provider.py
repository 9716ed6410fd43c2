"""A real `outlay serve` forwarding over HTTP to a provider on loopback (not the simulator),
driven by the official `openai` SDK: the provider gets the gateway's credential, answers and
streams pass through, the ledger charges the usage the provider reported, and calls reuse
the gateway's kept-alive connection."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web

from .conftest import Launch
from .harness import micros, price_cost_micros, unique
from .traffic import serve_in_thread

pytestmark = pytest.mark.e2e

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
WORDS = ["Hello", " from", " a", " provider", " on", " loopback", "."]


@dataclass
class Seen:
    authorization: str
    body: dict[str, Any]
    peer_port: int


@dataclass
class Provider:
    """An OpenAI-compatible chat endpoint in a thread of its own, recording what it got."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)


PROVIDER = web.AppKey("provider", Provider)


def _envelope(kind: str) -> dict[str, Any]:
    return {"id": "chatcmpl-loop", "object": kind, "created": 1_735_689_600,
            "model": "gpt-4o-mini-2024-07-18"}


async def _chat(request: web.Request) -> web.StreamResponse:
    provider = request.app[PROVIDER]
    body = await request.json()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    provider.seen.append(Seen(request.headers.get("Authorization", ""), body,
                              peer[1] if peer else 0))
    if body.get("model") == "gpt-4o":  # the provider's own refusal, passed through as is
        return web.json_response({"error": {"message": "slow down", "type": "requests"}},
                                 status=429, headers={"Retry-After": "7"})
    if not body.get("stream"):
        return web.json_response({**_envelope("chat.completion"), "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
             "finish_reason": "stop"}], "usage": USAGE})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for word in WORDS:  # one write each, a moment apart: chunks, not one buffered body
        chunk = {**_envelope("chat.completion.chunk"), "choices": [
            {"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.sleep(0.15 if body.get("user") == "slow" else 0.01)
    final = {**_envelope("chat.completion.chunk"), "choices": [], "usage": USAGE}
    await response.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    found = Provider()
    app = web.Application()
    app[PROVIDER] = found
    app.router.add_post("/v1/chat/completions", _chat)
    with serve_in_thread(app) as found.url:
        yield found


def test_calls_stream_and_charges_through_a_real_http_provider(
        launch: Launch, provider: Provider) -> None:
    gateway = launch({"providers": {"openai": {"endpoints": [
        {"base_url": f"{provider.url}/v1", "api_key": "sk-provider-secret"}]}}})
    minted = gateway.mint_key(unique("http-provider"), policy={
        "budgets": [{"usd": 1, "period": "day", "mode": "hard"}]})
    scope = f"key:{minted['id']}"
    price = gateway.prices()["gpt-4o-mini"]
    expected = price_cost_micros(price, USAGE["prompt_tokens"], USAGE["completion_tokens"])
    messages = [{"role": "user", "content": "Say hello."}]
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages)
        completion = raw.parse()
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True,
            stream_options={"include_usage": True}))
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="gpt-4o", messages=messages)

    assert completion.choices[0].message.content == "".join(WORDS)
    assert micros(raw.headers["x-outlay-cost-usd"]) == expected
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        WORDS)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7
    assert refused.value.response.headers["retry-after"] == "7"
    assert refused.value.body == {"message": "slow down", "type": "requests"}

    # the provider saw the gateway's credential, never the agent's, on one kept connection
    assert [s.authorization for s in provider.seen] == ["Bearer sk-provider-secret"] * 3
    assert len({s.peer_port for s in provider.seen}) == 1
    assert provider.seen[1].body["stream"] is True

    entries = {e["request_id"]: e for e in gateway.audit(scope)}
    assert micros(entries[raw.headers["x-outlay-request-id"]]["cost_usd"]) == expected
    assert sorted((e["status"], micros(e["cost_usd"])) for e in entries.values()) == [
        (200, expected), (200, expected), (429, 0)]
    assert micros(gateway.budget(scope)["spent_usd"]) == 2 * expected
    assert "Traceback" not in gateway.log()  # an agent hanging up at [DONE] is no error


def test_a_gateway_told_to_stop_finishes_the_stream_in_progress(
        launch: Launch, provider: Provider) -> None:
    config = {"providers": {"openai": {"endpoints": [
        {"base_url": f"{provider.url}/v1", "api_key": "sk-provider-secret"}]}}}
    gateway = launch(config)
    minted = gateway.mint_key(unique("stopping"))
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        stream = iter(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello."}],
            stream=True, stream_options={"include_usage": True}, user="slow"))
        chunks = [next(stream)]  # flowing: about a second of it left
        stopping = threading.Thread(target=gateway.stop)
        stopping.start()
        chunks += list(stream)
        stopping.join(15)
    assert not stopping.is_alive()
    assert gateway.proc is not None
    assert gateway.proc.returncode == 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        WORDS)
    assert chunks[-1].usage is not None
    # the call was settled before the gateway exited: charged its usage, nothing held
    again = launch(config, state=gateway.state_path, name="again")
    price = again.prices()["gpt-4o-mini"]
    expected = price_cost_micros(price, USAGE["prompt_tokens"], USAGE["completion_tokens"])
    [entry] = again.audit(f"key:{minted['id']}")
    assert (entry["status"], entry["settlement"]) == (200, "settled")
    assert micros(entry["cost_usd"]) == expected
    assert "Traceback" not in gateway.log()
