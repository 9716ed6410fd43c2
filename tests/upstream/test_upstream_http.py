"""HttpUpstream against real loopback servers: credentials, failover, breakers, streaming."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from outlay.upstream import (
    BreakerState,
    Endpoint,
    HttpUpstream,
    UpstreamBroken,
    UpstreamRequest,
    UpstreamUnreachable,
)

Serve = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]
RawServe = Callable[..., Awaitable[str]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class HeaviestFirst(random.Random):
    """With a constant draw, weighted ordering puts the heaviest endpoint first."""

    def random(self) -> float:
        return 0.5


@pytest.fixture
async def make_upstream() -> AsyncIterator[Callable[..., HttpUpstream]]:
    made: list[HttpUpstream] = []

    def make(*args: Any, **kwargs: Any) -> HttpUpstream:
        upstream = HttpUpstream(*args, **kwargs)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.close()


def post(
    provider: str = "openai",
    path: str = "/chat/completions",
    body: bytes = b'{"model": "m"}',
    headers: dict[str, str] | None = None,
    method: str = "POST",
    query: str = "",
) -> UpstreamRequest:
    return UpstreamRequest(
        provider=provider,
        method=method,
        path=path,
        headers=headers if headers is not None else {"Content-Type": "application/json"},
        body=body,
        stream=False,
        query=query,
    )


async def echo(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "headers": [[name.lower(), value] for name, value in request.headers.items()],
            "body": (await request.read()).decode(),
            "peer_port": peer[1] if peer else None,
        }
    )


async def read_json(upstream: HttpUpstream, request: UpstreamRequest) -> dict[str, Any]:
    response = await upstream.send(request)
    try:
        assert response.status == 200
        parsed: dict[str, Any] = json.loads(await response.read())
        return parsed
    finally:
        await response.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


# --- credentials and headers -------------------------------------------------------------


async def test_openai_gets_a_bearer_key_and_the_agent_credential_is_dropped(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream({"openai": [Endpoint(base + "/v1", "sk-real")]})
    seen = await read_json(
        upstream,
        post(
            headers={
                "Authorization": "Bearer olk_agent",
                "X-Api-Key": "olk_agent",
                "Content-Type": "application/json",
                "Accept-Encoding": "gzip, br",
                "OpenAI-Beta": "assistants=v2",
            },
            body=b'{"model": "gpt-4o-mini"}',
            query="a=1&b=%20x",
        ),
    )
    headers = seen["headers"]
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/chat/completions"
    assert seen["raw_path"] == "/v1/chat/completions?a=1&b=%20x"
    assert seen["body"] == '{"model": "gpt-4o-mini"}'
    assert ["authorization", "Bearer sk-real"] in headers
    assert [name for name, _ in headers].count("authorization") == 1
    assert not [name for name, _ in headers if name == "x-api-key"]
    assert ["accept-encoding", "identity"] in headers
    assert ["openai-beta", "assistants=v2"] in headers


async def test_anthropic_gets_x_api_key_and_a_default_version(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream({"anthropic": [Endpoint(base, "sk-ant-real")]})
    seen = await read_json(upstream, post("anthropic", "/v1/messages", headers={}))
    headers = dict(seen["headers"])
    assert seen["path"] == "/v1/messages"
    assert headers["x-api-key"] == "sk-ant-real"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers


async def test_anthropic_keeps_the_version_the_agent_asked_for(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream({"anthropic": [Endpoint(base, "sk-ant-real")]})
    request = post("anthropic", "/v1/messages", headers={"Anthropic-Version": "2024-01-01"})
    seen = await read_json(upstream, request)
    versions = [value for name, value in seen["headers"] if name == "anthropic-version"]
    assert versions == ["2024-01-01"]


async def test_other_providers_use_bearer_and_keyless_endpoints_send_no_credential(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    base = await serve(echo)
    upstream = make_upstream(
        {"groq": [Endpoint(base + "/openai/v1", "gsk-1")], "local": [Endpoint(base, None)]}
    )
    groq = dict((await read_json(upstream, post("groq")))["headers"])
    local = dict(
        (await read_json(upstream, post("local", headers={"Authorization": "Bearer olk_x"})))[
            "headers"
        ]
    )
    assert groq["authorization"] == "Bearer gsk-1"
    assert "authorization" not in local
    assert "x-api-key" not in local


async def test_header_bytes_that_are_not_utf8_go_on_as_the_agent_sent_them(
    raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]
) -> None:
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: Any) -> None:
        received.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    upstream = make_upstream({"openai": [Endpoint(await raw_server(answer), "k")]})
    # what aiohttp's server makes of the bytes b"agent/\xff\xfe"
    agent = b"agent/\xff\xfe".decode("utf-8", "surrogateescape")
    response = await upstream.send(post(headers={"User-Agent": agent}))
    try:
        assert response.status == 200
    finally:
        await response.close()
    assert b"\r\nUser-Agent: agent/\xff\xfe\r\n" in received[0]


async def test_a_header_that_cannot_be_encoded_is_never_sent(
    raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]
) -> None:
    connected: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: Any) -> None:
        connected.append(1)

    upstream = make_upstream({"openai": [Endpoint(await raw_server(count), "k")]})
    with pytest.raises(UpstreamUnreachable, match="cannot be encoded"):
        await upstream.send(post(headers={"User-Agent": "lone \ud800 surrogate"}))
    assert connected == []


async def test_response_headers_lose_hop_by_hop_and_length_but_keep_repeats(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        response = web.Response(body=b"ok", headers={"X-Request-Id": "r1", "Keep-Alive": "5"})
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response

    upstream = make_upstream({"openai": [Endpoint(await serve(handler), "k")]})
    response = await upstream.send(post())
    await response.read()
    await response.close()
    assert response.headers["x-request-id"] == "r1"
    assert "content-length" not in response.headers
    assert "keep-alive" not in response.headers
    assert isinstance(response.headers, CIMultiDict)
    assert response.headers.getall("set-cookie") == ["a=1", "b=2"]


async def test_a_compressed_answer_is_decoded_even_though_identity_was_asked(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    payload = b'{"text": "' + b"hello " * 500 + b'"}'

    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Accept-Encoding"] == "identity"
        return web.Response(
            body=gzip.compress(payload),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    upstream = make_upstream({"openai": [Endpoint(await serve(handler), "k")]})
    response = await upstream.send(post())
    assert await response.read() == payload
    await response.close()
    assert "content-encoding" not in response.headers


async def test_one_session_pools_connections(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    upstream = make_upstream({"openai": [Endpoint(await serve(echo), "k")]})
    first = await read_json(upstream, post())
    second = await read_json(upstream, post())
    assert first["peer_port"] == second["peer_port"]


def test_the_endpoint_repr_hides_the_key() -> None:
    assert "sk-secret" not in repr(Endpoint("https://api.openai.com/v1", "sk-secret"))


@pytest.mark.parametrize(
    ("base_url", "weight"), [("api.openai.com/v1", 1), ("ftp://x", 1), ("http://x", -1)]
)
def test_a_bad_endpoint_fails_at_configuration(base_url: str, weight: int) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        Endpoint(base_url, "k", weight)


# --- failover and circuit breakers ---------------------------------------------------------


async def test_fails_over_from_a_closed_port(
    serve: Serve, closed_port_url: str, make_upstream: Callable[..., HttpUpstream]
) -> None:
    live = await serve(echo)
    upstream = make_upstream(
        {"openai": [Endpoint(closed_port_url, "k", weight=5), Endpoint(live, "k", weight=1)]},
        rng=HeaviestFirst(),
    )
    seen = await read_json(upstream, post())
    assert seen["path"] == "/chat/completions"
    dead, alive = upstream.health()
    assert (dead.base_url, dead.consecutive_failures) == (closed_port_url, 1)
    assert (alive.state, alive.consecutive_failures) == (BreakerState.CLOSED, 0)


async def test_unreachable_when_every_endpoint_refuses(
    closed_port_url: str, make_upstream: Callable[..., HttpUpstream]
) -> None:
    upstream = make_upstream(
        {"openai": [Endpoint(closed_port_url, "k"), Endpoint(closed_port_url, "k")]}
    )
    with pytest.raises(UpstreamUnreachable, match="every openai endpoint failed"):
        await upstream.send(post())


async def test_unreachable_for_a_provider_with_no_endpoints(
    make_upstream: Callable[..., HttpUpstream],
) -> None:
    with pytest.raises(UpstreamUnreachable, match="no endpoints"):
        await make_upstream({}).send(post("mistral"))


async def test_5xx_answers_are_returned_then_open_the_circuit_until_a_probe_succeeds(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    hits: list[int] = []
    healthy = False

    async def handler(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({"ok": healthy}, status=200 if healthy else 503)

    clock = FakeClock()
    changes: list[tuple[str, str, BreakerState]] = []
    upstream = make_upstream(
        {"openai": [Endpoint(await serve(handler), "k")]},
        failure_threshold=2,
        cooldown_s=30.0,
        clock=clock,
        on_health_change=lambda provider, endpoint, state: changes.append(
            (provider, endpoint.base_url, state)
        ),
    )
    for _ in range(2):
        response = await upstream.send(post())
        assert response.status == 503  # a provider's 5xx is an answer, passed back as is
        await response.read()
        await response.close()
    assert upstream.health()[0].state is BreakerState.OPEN
    with pytest.raises(UpstreamUnreachable, match="circuit open"):
        await upstream.send(post())
    assert len(hits) == 2

    clock.now += 30
    healthy = True
    assert (await read_json(upstream, post())) == {"ok": True}
    assert upstream.health()[0].state is BreakerState.CLOSED
    assert [state for _, _, state in changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
    assert {provider for provider, _, _ in changes} == {"openai"}


# --- broken connections ---------------------------------------------------------------------


async def test_a_post_is_never_resent_after_the_connection_breaks(
    raw_server: RawServe, serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    received: list[bytes] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: Any) -> None:
        received.append(await read_request(reader))

    live_hits: list[int] = []

    async def live(request: web.Request) -> web.Response:
        live_hits.append(1)
        return web.json_response({})

    upstream = make_upstream(
        {
            "openai": [
                Endpoint(await raw_server(hang_up), "k", weight=5),
                Endpoint(await serve(live), "k", weight=1),
            ]
        },
        rng=HeaviestFirst(),
    )
    with pytest.raises(UpstreamBroken):
        await upstream.send(post())
    assert len(received) == 1
    assert received[0].endswith(b'{"model": "m"}')
    assert live_hits == []


async def test_an_idempotent_get_may_move_on_after_a_break(
    raw_server: RawServe, serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: Any) -> None:
        await read_request(reader)

    upstream = make_upstream(
        {
            "openai": [
                Endpoint(await raw_server(hang_up), "k", weight=5),
                Endpoint(await serve(echo), "k", weight=1),
            ]
        },
        rng=HeaviestFirst(),
    )
    seen = await read_json(upstream, post(method="GET", path="/models", body=b"", headers={}))
    assert (seen["method"], seen["path"]) == ("GET", "/models")


async def test_a_body_cut_short_is_broken(
    raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]
) -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: Any) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()

    upstream = make_upstream({"openai": [Endpoint(await raw_server(cut_short), "k")]})
    streamed = await upstream.send(post())
    assert streamed.status == 200
    with pytest.raises(UpstreamBroken, match="cut short"):
        async for _ in streamed.iter_chunks():
            pass
    await streamed.close()

    whole = await upstream.send(post())
    with pytest.raises(UpstreamBroken, match="cut short"):
        await whole.read()
    await whole.close()


async def test_silence_past_the_timeout_is_broken(
    raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]
) -> None:
    async def stall(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, release: asyncio.Event
    ) -> None:
        await read_request(reader)
        await release.wait()

    upstream = make_upstream({"openai": [Endpoint(await raw_server(stall), "k")]}, timeout_s=0.2)
    with pytest.raises(UpstreamBroken):
        await upstream.send(post())


async def test_the_timeout_bounds_each_wait_not_the_whole_answer(
    raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]
) -> None:
    async def drip(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, release: asyncio.Event
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):
            await asyncio.sleep(0.1)
            writer.write(b"4\r\ntick\r\n")
            await writer.drain()
        await release.wait()  # then silence

    upstream = make_upstream({"openai": [Endpoint(await raw_server(drip), "k")]}, timeout_s=0.5)
    answer = await upstream.send(post())
    chunks = answer.iter_chunks()
    # 0.8 s in all, past the timeout, each chunk well within it
    assert [await anext(chunks) for _ in range(8)] == [b"tick"] * 8
    with pytest.raises(UpstreamBroken, match=r"no answer within 0\.5 s"):
        await anext(chunks)
    await answer.close()


# --- streaming ------------------------------------------------------------------------------


async def test_chunks_pass_through_as_they_arrive(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    release = asyncio.Event()

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await release.wait()
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response

    upstream = make_upstream({"openai": [Endpoint(await serve(drip), "k")]})
    try:
        response = await upstream.send(post())
        assert "transfer-encoding" not in response.headers
        chunks = response.iter_chunks()
        # The server is parked on the event: the first chunk can only come from passing it on
        # before the body is complete. wait_for only guards against a hang.
        assert await asyncio.wait_for(anext(chunks), timeout=10) == b"data: first\n\n"
        release.set()
        assert b"".join([chunk async for chunk in chunks]) == b"data: second\n\n"
        await response.close()
    finally:
        release.set()


async def test_closing_an_unfinished_stream_frees_the_call(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    release = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"tick")
        await release.wait()
        return response

    upstream = make_upstream({"openai": [Endpoint(await serve(endless), "k")]})
    try:
        response = await upstream.send(post())
        chunks = response.iter_chunks()
        assert await asyncio.wait_for(anext(chunks), timeout=10) == b"tick"
        await response.close()
        with pytest.raises(UpstreamBroken):
            await anext(chunks)  # the connection is gone, not drained
        await response.close()  # twice is harmless
    finally:
        release.set()


async def test_close_then_send_again_opens_a_new_session(
    serve: Serve, make_upstream: Callable[..., HttpUpstream]
) -> None:
    upstream = make_upstream({"openai": [Endpoint(await serve(echo), "k")]})
    await read_json(upstream, post())
    await upstream.close()
    assert (await read_json(upstream, post()))["method"] == "POST"
