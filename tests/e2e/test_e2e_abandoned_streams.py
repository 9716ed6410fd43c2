"""An agent that stops reading a stream and closes it (a `break` after a few chunks, through
the official SDKs) is charged what the call cost, not its reservation: a real `outlay serve`
on each store reads the rest of a slow provider's stream for its usage. A hostile provider
whose stream never ends, or floods bytes, is read no longer than the bounds, and the call is
charged what it generated, as an estimate."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer

from .conftest import _launcher, _replica_launcher
from .harness import Gateway, micros, price_cost_micros, unique

pytestmark = pytest.mark.e2e

WORDS = 12  # the provider writes one word a token, every STEP_S
STEP_S = 0.1
INPUT_TOKENS = 13
CHAT_MODEL, CLAUDE_MODEL = "gpt-4o-mini", "claude-haiku-4-5"
HI = [{"role": "user", "content": "Say hello."}]
BOUND_S = 1.5  # server.abandoned_stream_s of the gateways here
BOUND_BYTES = 256 * 1024  # server.abandoned_stream_bytes
FLOOD = "x" * 8000


@dataclass
class Provider:
    """OpenAI- and Anthropic-shaped streaming endpoints in a thread of their own; each
    request's chunks sent and whether the reader went away, by the marker in its body."""

    url: str = ""
    sent: dict[str, int] = field(default_factory=dict)
    closed: dict[str, float] = field(default_factory=dict)  # marker -> when writes failed


PROVIDER = web.AppKey("provider", Provider)


def _sse(event: dict[str, Any], name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(event)}\n\n".encode()


async def _stream(request: web.Request, marker: str, mode: str,
                  events: Iterator[bytes]) -> web.StreamResponse:
    provider = request.app[PROVIDER]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    provider.sent[marker] = 0
    try:
        for event in events:
            await response.write(event)
            provider.sent[marker] += 1
            if mode != "flood":
                await asyncio.sleep(STEP_S if mode == "slow" else STEP_S / 2)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        provider.closed[marker] = time.monotonic()  # the gateway closed it
    return response


def _chat_events(mode: str) -> Iterator[bytes]:
    envelope = {"id": "chatcmpl-slow", "object": "chat.completion.chunk",
                "created": 1_735_689_600, "model": "gpt-4o-mini-2024-07-18"}
    n = 0
    while mode != "slow" or n < WORDS:
        text = FLOOD if mode == "flood" else f" w{n % 10}"
        yield _sse({**envelope, "choices": [
            {"index": 0, "delta": {"content": text}, "finish_reason": None}]})
        n += 1
    usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": WORDS,
             "total_tokens": INPUT_TOKENS + WORDS}
    yield _sse({**envelope, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _response_events(mode: str) -> Iterator[bytes]:
    response = {"id": "resp_slow", "object": "response", "created_at": 1_735_689_600,
                "model": "gpt-4o-mini-2024-07-18", "status": "in_progress", "output": []}
    yield _sse({"type": "response.created", "sequence_number": 0, "response": response},
               "response.created")
    n = 0
    while mode != "slow" or n < WORDS:
        yield _sse({"type": "response.output_text.delta", "sequence_number": n + 1,
                    "item_id": "msg_1", "output_index": 0, "content_index": 0,
                    "delta": f" w{n % 10}"}, "response.output_text.delta")
        n += 1
    usage = {"input_tokens": INPUT_TOKENS, "output_tokens": WORDS,
             "total_tokens": INPUT_TOKENS + WORDS,
             "input_tokens_details": {"cached_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}
    yield _sse({"type": "response.completed", "sequence_number": n + 1,
                "response": {**response, "status": "completed", "usage": usage}},
               "response.completed")


def _message_events(mode: str) -> Iterator[bytes]:
    yield _sse({"type": "message_start", "message": {
        "id": "msg_slow", "type": "message", "role": "assistant", "model": CLAUDE_MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}, "message_start")
    yield _sse({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}, "content_block_start")
    n = 0
    while mode != "slow" or n < WORDS:
        text = FLOOD if mode == "flood" else f" w{n % 10}"
        yield _sse({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}, "content_block_delta")
        n += 1
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                   "stop_sequence": None},
                "usage": {"output_tokens": WORDS}}, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    marker, mode = body["user"].split(":")
    return await _stream(request, marker, mode, _chat_events(mode))


async def _responses(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    marker, mode = body["metadata"]["marker"].split(":")
    return await _stream(request, marker, mode, _response_events(mode))


async def _messages(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    marker, mode = body["metadata"]["user_id"].split(":")
    return await _stream(request, marker, mode, _message_events(mode))


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    found = Provider()
    app = web.Application()
    app[PROVIDER] = found
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/responses", _responses)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield found
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        loop.close()


@pytest.fixture(scope="module", params=["sqlite", "redis+postgres"])
def gateway(request: pytest.FixtureRequest, provider: Provider,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway on each store, forwarding to the provider over HTTP."""
    config = {
        "providers": {
            "openai": {"endpoints": [{"base_url": f"{provider.url}/v1", "api_key": "sk-p"}]},
            "anthropic": {"endpoints": [{"base_url": provider.url, "api_key": "sk-ant-p"}]},
        },
        "server": {"abandoned_stream_s": BOUND_S, "abandoned_stream_bytes": BOUND_BYTES},
    }
    root: Path = tmp_path_factory.mktemp("abandoned")
    if request.param == "sqlite":
        with _launcher(request.config, root) as start:
            yield start(config, name="abandoned")
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    dsn = postgres.new_database()
    try:
        with _replica_launcher(request.config, root) as start_replicas:
            yield start_replicas(1, state_url=f"{redis.url}?tenant=t_abandoned",
                                 database=dsn, config_doc=config)[0]
    finally:
        postgres.drop_database(dsn)


def settled_entry(gateway: Gateway, scope: str) -> dict[str, Any]:
    """The scope's one ledger entry once settled (the gateway reads on after the agent left,
    up to BOUND_S)."""
    deadline = time.monotonic() + BOUND_S + 10
    while True:
        (entry,) = gateway.audit(scope)
        if entry["settlement"] != "pending":
            return entry
        assert time.monotonic() < deadline, f"not settled: {entry}"
        time.sleep(0.05)


def new_key(gateway: Gateway, prefix: str) -> tuple[dict[str, Any], str]:
    minted = gateway.mint_key(unique(prefix), policy={
        "budgets": [{"usd": 5, "period": "day", "mode": "hard"}]})
    return minted, f"key:{minted['id']}"


def read_three_and_break(stream: Any) -> None:
    for n, _ in enumerate(stream, 1):
        if n == 3:
            break
    stream.close()  # what leaving the `with` does; the SDKs close on `break` too


def test_an_abandoned_openai_stream_is_charged_its_real_usage(
        gateway: Gateway, provider: Provider) -> None:
    minted, scope = new_key(gateway, "quit-openai")
    marker = unique("chat")
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        read_three_and_break(client.chat.completions.create(
            model=CHAT_MODEL, messages=HI, stream=True, max_tokens=4000,
            user=f"{marker}:slow"))
    entry = settled_entry(gateway, scope)
    expected = price_cost_micros(gateway.prices()[CHAT_MODEL], INPUT_TOKENS, WORDS)
    assert entry["settlement"] == "settled"
    assert micros(entry["cost_usd"]) == expected
    assert micros(entry["reserved_usd"]) > 20 * expected  # not charged what it held
    assert provider.sent[marker] == WORDS + 2  # read to its end, usage and [DONE]
    assert micros(gateway.budget(scope)["spent_usd"]) == expected
    assert micros(gateway.budget(scope)["reserved_usd"]) == 0


def test_an_abandoned_responses_stream_is_charged_its_real_usage(
        gateway: Gateway, provider: Provider) -> None:
    minted, scope = new_key(gateway, "quit-responses")
    marker = unique("resp")
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        read_three_and_break(client.responses.create(
            model=CHAT_MODEL, input="Say hello.", stream=True, max_output_tokens=4000,
            metadata={"marker": f"{marker}:slow"}))
    entry = settled_entry(gateway, scope)
    expected = price_cost_micros(gateway.prices()[CHAT_MODEL], INPUT_TOKENS, WORDS)
    assert (entry["route"], entry["settlement"]) == ("openai.responses", "settled")
    assert micros(entry["cost_usd"]) == expected
    assert micros(entry["reserved_usd"]) > 20 * expected
    assert marker not in provider.closed  # read to its end
    assert micros(gateway.budget(scope)["reserved_usd"]) == 0


def test_an_abandoned_anthropic_stream_is_charged_its_real_usage(
        gateway: Gateway, provider: Provider) -> None:
    minted, scope = new_key(gateway, "quit-anthropic")
    marker = unique("msg")
    with anthropic.Anthropic(base_url=gateway.url, api_key=minted["key"], max_retries=0,
                             timeout=15) as client:
        read_three_and_break(client.messages.create(
            model=CLAUDE_MODEL, messages=HI, max_tokens=64_000, stream=True,
            metadata={"user_id": f"{marker}:slow"}))
    entry = settled_entry(gateway, scope)
    expected = price_cost_micros(gateway.prices()[CLAUDE_MODEL], INPUT_TOKENS, WORDS)
    assert entry["settlement"] == "settled"
    assert micros(entry["cost_usd"]) == expected
    assert micros(entry["reserved_usd"]) > 100 * expected
    assert marker not in provider.closed  # read to its end
    assert micros(gateway.budget(scope)["reserved_usd"]) == 0


@pytest.mark.parametrize("mode", ["endless", "flood"])
def test_a_stream_that_never_ends_is_cut_at_the_bound_and_charged_what_it_showed(
        gateway: Gateway, provider: Provider, mode: str) -> None:
    minted, scope = new_key(gateway, f"quit-{mode}")
    marker = unique(mode)
    price = gateway.prices()[CLAUDE_MODEL]
    with anthropic.Anthropic(base_url=gateway.url, api_key=minted["key"], max_retries=0,
                             timeout=15) as client:
        left = time.monotonic()
        read_three_and_break(client.messages.create(
            model=CLAUDE_MODEL, messages=HI, max_tokens=4000, stream=True,
            metadata={"user_id": f"{marker}:{mode}"}))
    entry = settled_entry(gateway, scope)
    deadline = time.monotonic() + 10
    while marker not in provider.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in provider.closed, "the gateway never closed the endless stream"
    # the upstream was closed at the bound: the time bound (and a little slack for a loaded
    # machine), or the byte bound long before it
    assert provider.closed[marker] - left < BOUND_S + 3
    sent = provider.sent[marker]
    cost, held = micros(entry["cost_usd"]), micros(entry["reserved_usd"])
    assert entry["settlement"] == "settled_estimate"
    if mode == "endless":
        # every word the provider sent counted (each " wN" under 4 tokens): at least the
        # input it reported and the words it generated, never more than was held
        words = sent - 2  # after message_start and content_block_start
        assert words > 3
        assert price_cost_micros(price, INPUT_TOKENS, words) <= cost < held
    else:
        # the byte bound, plus what loopback's socket buffers took in before the hang-up
        # was seen (a few MiB): far less than a flood sends in the time bound
        assert sent * len(FLOOD) <= BOUND_BYTES + 32 * 1024 * 1024
        assert cost == price_cost_micros(price, INPUT_TOKENS, 4000)  # more than it may write
        assert cost <= held
    assert micros(gateway.budget(scope)["spent_usd"]) == cost
    assert micros(gateway.budget(scope)["reserved_usd"]) == 0
