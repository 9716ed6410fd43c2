"""The server of the LLM routes (gateway/h1.py), on raw connections: keep-alive and
pipelining, the hand-over to aiohttp's server, what it does when a route fails, back
pressure, idle connections, and stopping with answers in progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from multidict import CIMultiDict

from outlay.gateway import h1
from outlay.gateway.h1_exchange import H1Exchange
from outlay.gateway.h1_head import Head

from .conftest import AsServed, ServedByH1
from .fakes import CHAT, SSE_HEADERS, WAIT_S, Outlay, Reply, openai_stream

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def server() -> type[AsServed]:
    return ServedByH1


def chat_request(secret: str, *extra: str, body: object = CHAT,
                 path: str = "/v1/chat/completions") -> bytes:
    data = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: gw", f"Authorization: Bearer {secret}",
             "Content-Type: application/json", *extra]
    if not any(x.lower().startswith("transfer-encoding") for x in extra):
        lines.append(f"Content-Length: {len(data)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"%x\r\n%b\r\n0\r\n\r\n" % (
        len(data), data)


@pytest.fixture
async def connect(outlay: Outlay) -> AsyncIterator[Callable[[], Awaitable[Conn]]]:
    """Opens raw connections to the gateway; closes them after the test."""
    opened: list[asyncio.StreamWriter] = []

    async def open_one() -> Conn:
        server = outlay.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        opened.append(writer)
        return reader, writer

    yield open_one
    for writer in opened:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), WAIT_S)


Connect = Callable[[], Awaitable[Conn]]


async def answer(reader: asyncio.StreamReader) -> tuple[int, CIMultiDict[str], bytes]:
    """One answer: status, headers, body (a chunked body joined)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name, value.strip())
    if status == 100:
        return status, headers, b""
    if "Content-Length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["Content-Length"])), WAIT_S)
        return status, headers, body
    body = b""
    while True:
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT_S)).strip(), 16)
        chunk = await asyncio.wait_for(reader.readexactly(size + 2), WAIT_S)
        if size == 0:
            return status, headers, body
        body += chunk[:-2]


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), WAIT_S) == b""


async def paused_stream(
    outlay: Outlay, key: dict[str, Any], connect: Connect
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """A stream whose head and first chunk arrived, waiting on the provider for the rest;
    its connection and request id."""
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream(), pause_after=1))
    reader, writer = await connect()
    writer.write(chat_request(key["key"], body={**CHAT, "stream": True}))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    rid = next(line.split(": ")[1] for line in head.decode().split("\r\n")
               if line.startswith("X-Outlay-Request-Id"))
    await asyncio.wait_for(outlay.upstream.paused.wait(), WAIT_S)
    return reader, writer, rid


async def test_requests_on_one_connection_are_answered_in_order(
    outlay: Outlay, key: dict[str, Any], connect: Connect,
) -> None:
    reader, writer = await connect()
    models = [{**CHAT, "model": "test-gpt", "user": str(n)} for n in range(3)]
    # pipelined: all three in one write, before any answer
    writer.write(b"".join(chat_request(key["key"], body=m) for m in models))
    ids = []
    for _ in models:
        status, headers, body = await answer(reader)
        assert status == 200, body
        assert "Date" in headers
        assert "Server" not in headers
        ids.append(headers["X-Outlay-Request-Id"])
    assert [json.loads(r.body)["user"] for r in outlay.upstream.requests] == ["0", "1", "2"]
    audit = await outlay.audit()
    assert sorted(ids) == sorted(e["request_id"] for e in audit)


async def test_a_connection_goes_to_aiohttp_for_any_other_request(
    outlay: Outlay, key: dict[str, Any], connect: Connect,
) -> None:
    reader, writer = await connect()
    writer.write(chat_request(key["key"]))
    assert (await answer(reader))[0] == 200
    writer.write(f"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key['key']}"
                 "\r\n\r\n".encode())
    status, headers, body = await answer(reader)
    assert status == 200, body
    assert "aiohttp" in headers["Server"]
    assert json.loads(body)["object"] == "list"
    # the connection stays with aiohttp, which serves the LLM routes too
    writer.write(chat_request(key["key"]))
    status, headers, _ = await answer(reader)
    assert status == 200
    assert "aiohttp" in headers["Server"]
    assert len(await outlay.audit()) == 2


@pytest.mark.parametrize("extra", [
    ("Transfer-Encoding: chunked",),
    ("Expect: 100-continue",),
], ids=["chunked body", "expect 100-continue"])
async def test_requests_that_are_not_plain_are_served_by_aiohttp(
    outlay: Outlay, key: dict[str, Any], extra: tuple[str, ...], connect: Connect,
) -> None:
    reader, writer = await connect()
    writer.write(chat_request(key["key"], *extra))
    status, headers, body = await answer(reader)
    if status == 100:
        status, headers, body = await answer(reader)
    assert status == 200, body
    assert "aiohttp" in headers["Server"]
    assert [e["status"] for e in await outlay.audit()] == [200]


async def test_a_body_over_the_limit_is_refused_and_recorded(make_outlay: Any) -> None:
    outlay = await make_outlay(max_body_bytes=200)
    key = await outlay.mint()
    reader, writer = await asyncio.open_connection(outlay.client.server.host,
                                                   outlay.client.server.port)
    try:
        writer.write(chat_request(key["key"], body={**CHAT, "padding": "x" * 300}))
        status, _, body = await answer(reader)
    finally:
        writer.close()
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert [e["status"] for e in await outlay.audit()] == [413]
    assert outlay.upstream.requests == []


async def test_a_malformed_request_is_answered_400_by_aiohttp(
    outlay: Outlay, key: dict[str, Any], connect: Connect,
) -> None:
    reader, writer = await connect()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nBad Header: x\r\n"
                 b"Content-Length: 2\r\n\r\n{}")
    status, _, _ = await answer(reader)
    assert status == 400
    assert outlay.upstream.requests == []
    assert await outlay.audit() == []


async def test_connection_close_ends_the_connection_after_the_answer(
    outlay: Outlay, key: dict[str, Any], connect: Connect,
) -> None:
    reader, writer = await connect()
    writer.write(chat_request(key["key"], "Connection: close"))
    status, headers, _ = await answer(reader)
    assert status == 200
    assert headers["Connection"] == "close"
    assert await closed(reader)


async def test_a_stream_is_sent_chunked(
    outlay: Outlay, key: dict[str, Any], connect: Connect
) -> None:
    chunks = openai_stream()
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks))
    reader, writer = await connect()
    writer.write(chat_request(key["key"], body={**CHAT, "stream": True}))
    status, headers, body = await answer(reader)
    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked"
    assert headers["Content-Type"] == "text/event-stream"
    assert body.startswith(chunks[0])
    assert body.endswith(b"data: [DONE]\n\n")
    rid = headers["X-Outlay-Request-Id"]
    assert (await outlay.store.wait_settled(rid)).settled == "settled"
    # and the connection serves the next call
    writer.write(chat_request(key["key"]))
    assert (await answer(reader))[0] == 200


async def test_an_agent_gone_mid_stream_is_charged_the_usage_reported_after_it_left(
    outlay: Outlay, key: dict[str, Any], connect: Connect, caplog: pytest.LogCaptureFixture,
) -> None:
    _reader, writer, rid = await paused_stream(outlay, key, connect)
    writer.transport.abort()
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.ERROR):
        outlay.upstream.release.set()
        outcome = await asyncio.wait_for(outlay.store.wait_settled(rid), WAIT_S)
    assert (outcome.settled, outcome.cost_micros) == ("settled", 20)  # 10 x 1 + 5 x 2
    assert all(r.closed for r in outlay.upstream.responses)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []  # no error


async def test_a_failing_route_answers_500_and_closes(
    outlay: Outlay, key: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, connect: Connect,
) -> None:
    async def broken(*_: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(outlay.upstream, "send", broken)
    reader, writer = await connect()
    writer.write(chat_request(key["key"]))
    status, headers, body = await answer(reader)
    assert status == 500
    assert headers["Connection"] == "close"
    assert b"Internal Server Error" in body
    assert await closed(reader)
    assert "error answering POST /v1/chat/completions" in caplog.text


async def test_idle_connections_are_closed(make_outlay: Any) -> None:
    outlay = await make_outlay(idle_timeout_s=0.05)
    key = await outlay.mint()
    server = outlay.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(chat_request(key["key"]))
        assert (await answer(reader))[0] == 200
        assert await closed(reader)
    finally:
        writer.close()


async def test_stopping_lets_an_answer_in_progress_finish(
    outlay: Outlay, key: dict[str, Any], connect: Connect,
) -> None:
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=openai_stream(), pause_after=1))
    streaming, stream_writer = await connect()
    idle_reader, _idle_writer = await connect()
    stream_writer.write(chat_request(key["key"], body={**CHAT, "stream": True}))
    await asyncio.wait_for(outlay.upstream.paused.wait(), WAIT_S)
    site = cast(ServedByH1, outlay.client.server).site
    assert site.h1 is not None
    stopping = asyncio.create_task(site.h1.shutdown(grace_s=WAIT_S))
    assert await closed(idle_reader)  # nothing in progress there: closed at once
    assert not stopping.done()
    outlay.upstream.release.set()
    status, headers, body = await answer(streaming)
    assert status == 200
    assert body.endswith(b"data: [DONE]\n\n")
    await asyncio.wait_for(stopping, WAIT_S)
    assert await closed(streaming)
    outcome = await outlay.store.wait_settled(headers["X-Outlay-Request-Id"])
    assert outcome.settled == "settled"


async def test_stopping_cuts_what_outlasts_the_grace(
    outlay: Outlay, key: dict[str, Any], connect: Connect,
) -> None:
    reader, _writer, rid = await paused_stream(outlay, key, connect)
    site = cast(ServedByH1, outlay.client.server).site
    assert site.h1 is not None
    await asyncio.wait_for(site.h1.shutdown(grace_s=0.05), WAIT_S)
    data = await asyncio.wait_for(reader.read(), WAIT_S)
    assert not data.endswith(b"0\r\n\r\n")  # cut, not ended like a finished stream
    assert (await outlay.store.wait_settled(rid)).settled == "unsettled"


# -- the connection against a transport double -----------------------------------------------

class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.writes: list[bytes] = []
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data
        self.writes.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> None:
        return None


def connection(routes: dict[str, Callable[[h1.Exchange], Awaitable[None]]]
               ) -> tuple[h1.H1Connection, Transport]:
    server = h1.H1Server(routes, fallback=lambda: asyncio.Protocol(),
                         limits=h1.Limits(max_body=1 << 20))
    conn = h1.H1Connection(server)
    transport = Transport()
    conn.connection_made(cast(asyncio.Transport, transport))
    return conn, transport


def plain(path: str = "/r", body: bytes = b"{}") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def test_a_stream_waits_while_the_agent_reads_slowly() -> None:
    go = asyncio.Event()
    wrote: list[str] = []

    async def route(ex: h1.Exchange) -> None:
        await ex.start(200, {})
        await ex.write(b"first")
        wrote.append("first")
        await go.wait()
        await ex.write(b"second")
        wrote.append("second")
        await ex.end()

    conn, transport = connection({"/r": route})
    conn.data_received(plain())
    await asyncio.sleep(0.01)
    conn.pause_writing()  # the agent's socket buffer is full
    go.set()
    await asyncio.sleep(0.01)
    assert wrote == ["first"]  # waits to be writable
    conn.resume_writing()
    await asyncio.sleep(0.01)
    assert wrote == ["first", "second"]
    assert transport.written.endswith(b"6\r\nsecond\r\n0\r\n\r\n")


async def test_a_stream_waiting_to_write_learns_the_agent_is_gone() -> None:
    failures: list[BaseException] = []

    async def route(ex: h1.Exchange) -> None:
        try:
            await ex.start(200, {})
            await ex.write(b"x")
        except ConnectionError as exc:
            failures.append(exc)
            raise

    conn, transport = connection({"/r": route})
    conn.pause_writing()
    conn.data_received(plain())
    await asyncio.sleep(0.01)
    conn.connection_lost(None)
    await asyncio.sleep(0.01)
    assert len(failures) == 1
    assert conn.task is None
    assert transport.closed


async def test_reading_pauses_while_a_request_runs_with_much_more_buffered() -> None:
    go = asyncio.Event()

    async def route(ex: h1.Exchange) -> None:
        await go.wait()
        await ex.send(200, {}, b"ok")

    conn, transport = connection({"/r": route})
    conn.data_received(plain())
    await asyncio.sleep(0)
    conn.data_received(plain(body=b"x" * h1.READ_AHEAD))
    assert not transport.reading
    go.set()
    await asyncio.sleep(0.01)
    # the first is answered, and reading goes on for the rest of the second
    assert transport.reading
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("header", [("X-Evil", "a\r\nSet-Cookie: x=1"), ("X-Evil", "a\nb"),
                                    ("X-Evil", "a\rb"), ("X-\nEvil", "a"), ("X-Evil", "a\r")])
async def test_a_header_with_a_line_break_is_never_written(header: tuple[str, str]) -> None:
    conn, transport = connection({})
    ex = H1Exchange(conn, Head("/r", "", CIMultiDict(), 0, 0, False))
    with pytest.raises(ValueError, match="line break"):
        await ex.send(200, CIMultiDict([("X-Fine", "x"), header]), b"")
    assert transport.written == b""


@pytest.mark.parametrize("chunks", [[b"data: 1\n\n", b"data: 2\n\n"], []])
async def test_a_streams_head_goes_out_with_its_first_chunk(chunks: list[bytes]) -> None:
    async def route(ex: h1.Exchange) -> None:
        await ex.start(200, {"Content-Type": "text/event-stream"})
        for chunk in chunks:
            await ex.write(chunk)
        await ex.end()

    conn, transport = connection({"/r": route})
    conn.data_received(plain())
    await asyncio.sleep(0.01)
    first = transport.writes[0]
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in first
    if chunks:
        assert first.endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
        assert transport.writes[1:] == [b"9\r\ndata: 2\n\n\r\n", b"0\r\n\r\n"]
    else:
        assert first.endswith(b"\r\n\r\n0\r\n\r\n")
        assert len(transport.writes) == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_an_answer_that_has_no_body_gets_no_length(status: int) -> None:
    async def route(ex: h1.Exchange) -> None:
        await ex.send(status, {"X-Outlay-Request-Id": "req_1"}, b"ignored")

    conn, transport = connection({"/r": route})
    conn.data_received(plain())
    await asyncio.sleep(0.01)
    head, _, rest = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Length" not in head
    assert b"X-Outlay-Request-Id: req_1" in head
    assert rest == b""


async def test_a_body_left_unread_is_dropped_or_the_connection_closed() -> None:
    async def refuse(ex: h1.Exchange) -> None:
        await ex.send(401, {}, b"no")  # the body is never asked for

    conn, transport = connection({"/r": refuse})
    small = plain(body=b"x" * 100)
    conn.data_received(small[:-50])  # half of a small body: answered, kept, the rest dropped
    await asyncio.sleep(0.01)
    assert b"Connection: close" not in transport.written
    conn.data_received(small[-50:] + plain())
    await asyncio.sleep(0.01)
    assert transport.written.count(b"HTTP/1.1 401") == 2
    assert not transport.closed

    large = plain(body=b"x" * (h1.DRAIN_MAX + 1000))
    conn.data_received(large[:100])  # too much still to come: answered, then closed
    await asyncio.sleep(0.01)
    assert transport.written.endswith(b"Connection: close\r\n\r\nno")
    assert transport.closed
    written = bytes(transport.written)
    conn.data_received(large[100:])  # what still arrives is never read as a request
    await asyncio.sleep(0.01)
    assert transport.written == written


async def test_a_body_not_asked_for_is_not_read_past_the_read_ahead() -> None:
    asked = asyncio.Event()
    got: list[int] = []

    async def route(ex: h1.Exchange) -> None:
        await asked.wait()  # a key check, say, before the body
        got.append(len(await ex.body(1 << 21)))
        await ex.send(200, {}, b"ok")

    conn, transport = connection({"/r": route})
    request = plain(body=b"x" * (1 << 20))
    conn.data_received(request[:h1.READ_AHEAD + 100])
    await asyncio.sleep(0.01)
    assert not transport.reading  # no more of it until the route asks
    asked.set()
    await asyncio.sleep(0.01)
    assert transport.reading
    conn.data_received(request[h1.READ_AHEAD + 100:])
    await asyncio.sleep(0.01)
    assert got == [1 << 20]
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_stream_the_route_cuts_closes_its_connection_and_logs_no_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """An upstream stream broken mid-way: the route cuts the agent's connection (abort)
    rather than end a truncated answer as a whole one; that is an answer, not a bug."""
    async def route(ex: h1.Exchange) -> None:
        await ex.start(200, {"Content-Type": "text/event-stream"})
        await ex.write(b"data: 1\n\n")
        ex.abort()

    conn, transport = connection({"/r": route})
    with caplog.at_level(logging.ERROR):
        conn.data_received(plain())
        await asyncio.sleep(0.01)
    assert transport.closed
    assert not transport.written.endswith(b"0\r\n\r\n")  # no clean end of the body
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
