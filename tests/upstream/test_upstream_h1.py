"""The HTTP/1.1 client under HttpUpstream, against raw loopback servers that write exactly
the bytes each case needs: framing, connection reuse, limits, back-pressure, bad input."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from aiohttp import web

from outlay.upstream import (
    Endpoint,
    HttpUpstream,
    UpstreamBroken,
    UpstreamRequest,
    UpstreamUnreachable,
    h1,
)

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
RawServe = Callable[..., Awaitable[str]]


@pytest.fixture
async def make_upstream() -> AsyncIterator[Callable[..., HttpUpstream]]:
    made: list[HttpUpstream] = []

    def make(url: str, **kwargs: Any) -> HttpUpstream:
        upstream = HttpUpstream({"openai": [Endpoint(url, "k")]}, **kwargs)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.close()


def post(body: bytes = b'{"model": "m"}', method: str = "POST", path: str = "/chat",
         headers: dict[str, str] | None = None) -> UpstreamRequest:
    return UpstreamRequest("openai", method, path, headers or {}, body, stream=False)


async def read_head(reader: Reader) -> tuple[bytes, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


async def read_request(reader: Reader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    line, fields = await read_head(reader)
    body = await reader.readexactly(int(fields.get(b"content-length", b"0")))
    return line, fields, body


def replies(*answers: bytes) -> Callable[[Reader, Writer, Any], Awaitable[None]]:
    """A raw handler that reads a request and writes the next answer, byte for byte, until
    it has none left; then the connection closes."""
    async def handler(reader: Reader, writer: Writer, _: Any) -> None:
        for raw in answers:
            await read_request(reader)
            writer.write(raw)
            await writer.drain()

    return handler


async def answer(upstream: HttpUpstream, request: UpstreamRequest | None = None
                 ) -> tuple[int, dict[str, str], bytes]:
    response = await upstream.send(request or post())
    try:
        return response.status, dict(response.headers), await response.read()
    finally:
        await response.close()


# --- framing ---------------------------------------------------------------------------------

async def test_a_body_that_ends_when_the_server_closes_is_whole(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    # no length, not chunked: the server closing the connection ends the body
    until_close = replies(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
    upstream = make_upstream(await raw_server(until_close))
    assert await answer(upstream) == (200, {"Content-Type": "text/plain"}, b"all of it")


async def test_a_chunked_body_is_unframed_and_a_cut_one_is_broken(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    chunked = replies(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    upstream = make_upstream(await raw_server(chunked))
    assert (await answer(upstream))[2] == b"hello world"
    with pytest.raises(UpstreamBroken, match="cut short"):
        await answer(upstream)


async def test_an_interim_answer_is_skipped_for_the_final_one(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    early_hints = replies(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok")
    upstream = make_upstream(await raw_server(early_hints))
    assert await answer(upstream) == (201, {"X-Final": "yes"}, b"ok")


async def test_something_that_is_not_http_is_broken(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    upstream = make_upstream(await raw_server(replies(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")))
    with pytest.raises(UpstreamBroken, match="not a valid HTTP answer"):
        await upstream.send(post())


async def test_the_answer_to_a_head_has_no_body_whatever_its_length_says(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    async def head(reader: Reader, writer: Writer, _: Any) -> None:
        line, _fields, _body = await read_request(reader)
        assert line.startswith(b"HEAD ")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up

    upstream = make_upstream(await raw_server(head))
    status, _, body = await asyncio.wait_for(
        answer(upstream, post(b"", method="HEAD")), 5)
    assert (status, body) == (200, b"")


async def test_a_coding_it_cannot_decode_passes_through_with_its_header(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    deflated = zlib.compress(b"squeezed " * 100)

    encoded = replies(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n\x0b\x02\x80x",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: "
        + str(len(deflated)).encode() + b"\r\n\r\n" + deflated,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnope!")
    upstream = make_upstream(await raw_server(encoded))
    assert await answer(upstream) == (200, {"Content-Encoding": "br"}, b"\x0b\x02\x80x")
    assert await answer(upstream) == (200, {}, b"squeezed " * 100)
    with pytest.raises(UpstreamBroken, match="cannot decode the gzip body"):
        await answer(upstream)


# --- what is sent ------------------------------------------------------------------------------

async def test_the_request_is_framed_and_a_get_without_a_body_has_no_length(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    seen: list[tuple[bytes, dict[bytes, bytes], bytes]] = []

    async def record(reader: Reader, writer: Writer, _: Any) -> None:
        for _ in range(2):
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    url = await raw_server(record)
    port = url.rsplit(":", 1)[1]
    upstream = HttpUpstream({"openai": [Endpoint(url + "/v1/", "sk-1")]})
    try:
        await answer(upstream, post(b'{"a": 1}', headers={"X-Trace": "t"}))
        await answer(upstream, post(b"", method="get", path="/models"))
    finally:
        await upstream.close()
    (line1, fields1, body1), (line2, fields2, body2) = seen
    assert line1 == b"POST /v1/chat HTTP/1.1"
    assert fields1[b"host"] == f"127.0.0.1:{port}".encode()
    assert (fields1[b"content-length"], body1) == (b"8", b'{"a": 1}')
    assert (fields1[b"authorization"], fields1[b"x-trace"]) == (b"Bearer sk-1", b"t")
    assert fields1[b"accept-encoding"] == b"identity"
    assert line2 == b"GET /v1/models HTTP/1.1"
    assert b"content-length" not in fields2
    assert body2 == b""


@pytest.mark.parametrize("headers", [{"X-Evil": "a\r\nX-Injected: 1"}, {"X-Evil\n": "a"}])
async def test_a_header_holding_a_line_break_is_refused_before_anything_is_sent(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream],
        headers: dict[str, str]) -> None:
    connected: list[int] = []

    async def count(reader: Reader, writer: Writer, _: Any) -> None:
        connected.append(1)

    upstream = make_upstream(await raw_server(count))
    with pytest.raises(UpstreamUnreachable, match="line break"):
        await upstream.send(post(headers=headers))
    assert connected == []


@pytest.mark.parametrize("path", ["/chat completions", "/chat\r\nX: 1", "/a\x00b"])
async def test_a_path_with_spaces_or_controls_is_refused_before_anything_is_sent(
        closed_port_url: str, make_upstream: Callable[..., HttpUpstream], path: str) -> None:
    upstream = make_upstream(closed_port_url)
    with pytest.raises(UpstreamUnreachable, match="bad request target"):
        await upstream.send(post(path=path))


@pytest.mark.parametrize("base_url", ["http://user:pw@x/v1", "http://x/v1?a=1",
                                      "http://x:99999/v1", "http:///v1"])
def test_an_endpoint_url_the_client_cannot_use_fails_at_configuration(base_url: str) -> None:
    with pytest.raises(ValueError, match="endpoint base_url"):
        Endpoint(base_url, "k")


# --- connections ---------------------------------------------------------------------------------

async def test_a_connection_the_server_closes_is_not_reused(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    connections: list[int] = []

    async def one_each(reader: Reader, writer: Writer, _: Any) -> None:
        connections.append(1)
        await read_request(reader)
        # keep-alive by default, then closed anyway: the client must see it before reusing
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def said_close(reader: Reader, writer: Writer, _: Any) -> None:
        connections.append(2)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.2)  # still open: only the header says it will not be reused

    for handler, mark in ((one_each, 1), (said_close, 2)):
        upstream = make_upstream(await raw_server(handler))
        for _ in range(3):
            assert (await answer(upstream))[2] == b"ok"
            await asyncio.sleep(0.05)  # the server's close reaches the client meanwhile
        assert connections.count(mark) == 3


async def test_an_idle_connection_is_not_reused_after_the_idle_limit(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream],
        monkeypatch: pytest.MonkeyPatch) -> None:
    connections: list[int] = []

    async def keep_alive(reader: Reader, writer: Writer, release: asyncio.Event) -> None:
        connections.append(1)
        while not reader.at_eof():
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    monkeypatch.setattr(h1, "IDLE_S", 0.1)
    upstream = make_upstream(await raw_server(keep_alive))
    await answer(upstream)
    await answer(upstream)
    assert len(connections) == 1
    await asyncio.sleep(0.15)
    await answer(upstream)
    assert len(connections) == 2


async def test_calls_past_the_connection_limit_wait_for_a_free_one(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    connections: list[int] = []
    in_flight = peak = 0

    async def slow(reader: Reader, writer: Writer, _: Any) -> None:
        nonlocal in_flight, peak
        connections.append(1)
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    upstream = make_upstream(await raw_server(slow), max_connections=2)
    answers = await asyncio.wait_for(asyncio.gather(*(answer(upstream) for _ in range(8))), 10)
    assert [a[2] for a in answers] == [b"ok"] * 8
    assert (len(connections), peak) == (2, 2)


async def test_a_failed_connect_frees_its_place_under_the_limit(
        closed_port_url: str, make_upstream: Callable[..., HttpUpstream]) -> None:
    upstream = make_upstream(closed_port_url, max_connections=1)
    for _ in range(3):  # each attempt would wait for ever if the first kept its place
        with pytest.raises(UpstreamUnreachable, match="cannot connect"):
            await asyncio.wait_for(upstream.send(post()), 5)


async def test_a_large_answer_read_slowly_arrives_whole(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    size = 8 * h1.HIGH_WATER  # past the point where the client stops reading the socket
    payload = bytes(range(256)) * (size // 256)

    async def big(reader: Reader, writer: Writer, _: Any) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for i in range(0, size, 65536):
            writer.write(payload[i:i + 65536])
            await writer.drain()

    upstream = make_upstream(await raw_server(big))
    response = await upstream.send(post())
    got = bytearray()
    async for chunk in response.iter_chunks():
        got += chunk
        await asyncio.sleep(0)  # a slow reader: the buffer fills, reading pauses, resumes
    await response.close()
    assert bytes(got) == payload


async def test_closing_the_upstream_ends_a_stream_that_waits(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    async def stalls(reader: Reader, writer: Writer, release: asyncio.Event) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntick\r\n")
        await writer.drain()
        await release.wait()

    upstream = make_upstream(await raw_server(stalls))
    response = await upstream.send(post())
    chunks = response.iter_chunks()
    assert await anext(chunks) == b"tick"
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.05)
    await upstream.close()
    with pytest.raises(UpstreamBroken):
        await asyncio.wait_for(waiting, 5)
    await response.close()


async def test_a_call_cancelled_while_waiting_drops_its_connection(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    connections: list[int] = []

    async def first_stalls(reader: Reader, writer: Writer, release: asyncio.Event) -> None:
        connections.append(1)
        await read_request(reader)
        if len(connections) == 1:
            await release.wait()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    upstream = make_upstream(await raw_server(first_stalls))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(upstream.send(post()), 0.1)
    # the cancelled call's late answer can never be read as the next call's
    assert (await answer(upstream))[2] == b"ok"
    assert len(connections) == 2


# --- TLS -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_server(ca: trustme.CA, name: str) -> tuple[web.AppRunner, int]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"tls": request.secure, "host": request.host})

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_ctx)
    app = web.Application()
    app.router.add_post("/v1/chat", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    return runner, runner.addresses[0][1]


async def test_https_verifies_the_provider_certificate_and_its_name(ca: trustme.CA) -> None:
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    runner, port = await _tls_server(ca, "localhost")
    try:
        good = HttpUpstream({"openai": [Endpoint(f"https://localhost:{port}/v1", "k")]},
                            tls=trusted)
        status, _, body = await answer(good)
        await good.close()
        assert status == 200
        assert body == b'{"tls": true, "host": "localhost:%d"}' % port

        # the same server under a name its certificate does not carry
        wrong_name = HttpUpstream({"openai": [Endpoint(f"https://127.0.0.1:{port}/v1", "k")]},
                                  tls=trusted)
        with pytest.raises(UpstreamUnreachable, match="certificate"):
            await wrong_name.send(post())
        await wrong_name.close()

        # and by a client that does not trust its CA (the system's CAs only)
        untrusting = HttpUpstream({"openai": [Endpoint(f"https://localhost:{port}/v1", "k")]})
        with pytest.raises(UpstreamUnreachable, match="certificate"):
            await untrusting.send(post())
        await untrusting.close()
    finally:
        await runner.cleanup()


async def test_a_call_cancelled_during_the_tls_handshake_frees_its_place(
        raw_server: RawServe, ca: trustme.CA) -> None:
    async def silent(reader: Reader, writer: Writer, release: asyncio.Event) -> None:
        await release.wait()  # accepts, never answers the handshake

    url = (await raw_server(silent)).replace("http://127.0.0.1", "https://localhost")
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    upstream = HttpUpstream({"openai": [Endpoint(url, "k")]}, tls=trusted, max_connections=1)
    try:
        for _ in range(2):  # the second would wait for ever for the first one's place
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(upstream.send(post()), 0.2)
    finally:
        await upstream.close()


async def test_headers_the_server_names_in_connection_stay_on_that_hop(
        raw_server: RawServe, make_upstream: Callable[..., HttpUpstream]) -> None:
    named = replies(
        b"HTTP/1.1 200 OK\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\n"
        b"X-Kept: 2\r\nContent-Encoding: identity\r\nContent-Length: 2\r\n\r\nok")
    upstream = make_upstream(await raw_server(named))
    assert await answer(upstream) == (200, {"X-Kept": "2"}, b"ok")
