"""What one connection may take on `outlay serve`'s servers (gateway/h1.py in front, and the
connections it hands to aiohttp's, gateway/handoff.py): malformed heads are answered and
closed at once, slow heads, slow bodies and idle connections are closed after their time,
and past max_connections new connections are closed while the open ones go on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest

from outlay.gateway.h1 import H1Server
from outlay.gateway.handoff import MAX_HEAD_BYTES
from outlay.state.base import NewKey

from .conftest import AsServed, ServedByH1
from .fakes import CHAT, MakeOutlay, Outlay
from .test_h1 import Conn, answer, chat_request

CLOSE_S = 1.0  # a malformed head is answered and closed well within this
SHORT_S = 0.3  # the time limits these tests set
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


@pytest.fixture
def server() -> type[AsServed]:
    return ServedByH1


Open = Callable[[], Awaitable[Conn]]


@pytest.fixture
async def opener() -> AsyncIterator[Callable[[Outlay], Open]]:
    """opener(outlay)() opens a raw connection to that gateway; all closed after the test."""
    opened: list[asyncio.StreamWriter] = []

    def bind(outlay: Outlay) -> Open:
        async def open_one() -> Conn:
            server = outlay.client.server
            reader, writer = await asyncio.open_connection(server.host, server.port)
            opened.append(writer)
            return reader, writer
        return open_one

    yield bind
    for writer in opened:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_S)


async def until_closed(reader: asyncio.StreamReader, within_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    start = time.monotonic()
    data = b""
    async with asyncio.timeout(within_s):
        while chunk := await reader.read(65536):
            data += chunk
    return data, time.monotonic() - start


async def secret_of(outlay: Outlay) -> str:
    """A key minted in the store: no HTTP connection of the test client is opened."""
    _, secret = await outlay.store.create_key(NewKey(agent="agent-a"))
    return secret


async def paying_call(open_one: Open, secret: str) -> None:
    reader, writer = await open_one()
    writer.write(chat_request(secret))
    status, _, body = await answer(reader)
    assert status == 200, body


MALFORMED = {
    "bare LF": b"GET /healthz HTTP/1.1\nHost: x\n\n",
    "bare LF on an LLM route": b"POST /v1/chat/completions HTTP/1.1\nContent-Length: 2\n\n{}",
    "bare CR": b"GET /healthz HTTP/1.1\rHost: x\r\r",
    "garbage without CRLF": b"hello there, this is not http",
    "control bytes": b"\x00\x01\x02\x03 garbage",
    "TLS ClientHello": bytes.fromhex("16030100c4010000c00303") + bytes(32),
    "non-UTF-8 request line": b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-UTF-8 header name": b"POST /v1/chat/completions HTTP/1.1\r\nX-\xff: a\r\n"
                             b"Content-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_head_is_answered_400_and_closed_at_once(
    outlay: Outlay, opener: Callable[[Outlay], Open], data: bytes,
) -> None:
    reader, writer = await opener(outlay)()
    writer.write(data)
    got, took = await until_closed(reader, CLOSE_S)
    assert got.startswith((b"HTTP/1.0 400 Bad Request\r\n", b"HTTP/1.1 400 Bad Request\r\n")
                          ), got
    assert took < CLOSE_S
    assert await outlay.audit() == []


@pytest.mark.parametrize("first", [b"", HEALTHZ], ids=["first head", "after a handover"])
@pytest.mark.parametrize("line", [
    "X-Long: " + "a" * MAX_HEAD_BYTES,  # one long line
    "\r\n".join(f"X-{n}: " + "a" * 4000 for n in range(10)),  # many lines
], ids=["long line", "many lines"])
async def test_an_oversized_head_is_answered_431_and_closed(
    outlay: Outlay, opener: Callable[[Outlay], Open], first: bytes, line: str,
) -> None:
    reader, writer = await opener(outlay)()
    if first:
        writer.write(first)
        assert (await answer(reader))[0] == 200
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\n{line}\r\n".encode())
    got, took = await until_closed(reader, CLOSE_S)
    assert got.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), got[:80]
    assert b"Connection: close" in got
    assert took < CLOSE_S


async def test_a_head_of_many_lines_under_the_limit_is_served(
    outlay: Outlay, opener: Callable[[Outlay], Open],
) -> None:
    # aiohttp's own line limit (8190 bytes) would have answered 400
    reader, writer = await opener(outlay)()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Cookie: " + b"a" * 12_000
                 + b"\r\n\r\n")
    assert (await answer(reader))[0] == 200


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send `data` a byte at a time until the server closes the connection."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)


@pytest.mark.parametrize("first", [b"", HEALTHZ], ids=["lean server", "after a handover"])
@pytest.mark.parametrize("head", [
    chat_request("olk_x"), HEALTHZ,
], ids=["LLM route", "other route"])
async def test_a_slow_head_is_closed_after_the_header_timeout(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open], first: bytes, head: bytes,
) -> None:
    outlay = await make_outlay(header_timeout_s=SHORT_S)
    open_one = opener(outlay)
    secret = await secret_of(outlay)
    reader, writer = await open_one()
    if first:
        writer.write(first)
        assert (await answer(reader))[0] == 200
    sending = asyncio.create_task(trickle(writer, head, SHORT_S / 10))
    await paying_call(open_one, secret)  # meanwhile, another connection is served
    got, took = await until_closed(reader, 4 * SHORT_S)
    assert got == b""
    assert took >= SHORT_S * 0.8
    sending.cancel()


@pytest.mark.parametrize("first", [b"", HEALTHZ], ids=["lean server", "handed over"])
async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open], first: bytes,
) -> None:
    outlay = await make_outlay(idle_timeout_s=SHORT_S)
    open_one = opener(outlay)
    secret = await secret_of(outlay)
    reader, writer = await open_one()
    writer.write(first or chat_request(secret))
    assert (await answer(reader))[0] == 200
    started = time.monotonic()
    await paying_call(open_one, secret)
    got, _ = await until_closed(reader, 4 * SHORT_S)
    assert got == b""
    assert time.monotonic() - started >= SHORT_S * 0.8


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open],
) -> None:
    outlay = await make_outlay(header_timeout_s=SHORT_S)
    reader, _ = await opener(outlay)()
    got, took = await until_closed(reader, 4 * SHORT_S)
    assert got == b""
    assert took >= SHORT_S * 0.8


async def counted_down(server: H1Server, to: int) -> None:
    """Wait (a bounded while) for the server's count of open connections to come down."""
    for _ in range(100):
        if server.open <= to:
            return
        await asyncio.sleep(0.01)
    assert server.open <= to


def partial_chat(secret: str, missing: int) -> bytes:
    """A chat request whose last `missing` body bytes are not sent."""
    return chat_request(secret)[:-missing]


@pytest.mark.parametrize("route", ["lean", "aiohttp"])
async def test_a_slow_body_is_answered_408_and_closed(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open], route: str,
) -> None:
    outlay = await make_outlay(body_timeout_s=SHORT_S)
    key = await outlay.mint()
    reader, writer = await opener(outlay)()
    if route == "aiohttp":  # the connection is aiohttp's from a first request on
        writer.write(HEALTHZ)
        assert (await answer(reader))[0] == 200
    writer.write(partial_chat(key["key"], 5))
    status, headers, body = await answer(reader)
    assert status == 408, body
    assert b"request_timeout" in body
    assert headers["Connection"] == "close"
    assert (await until_closed(reader, CLOSE_S))[0] == b""
    [entry] = await outlay.audit()
    assert (entry["decision"], entry["status"], entry["code"], entry["key_id"]) == (
        "invalid", 408, "request_timeout", key["id"])
    assert outlay.upstream.requests == []


async def test_a_slow_body_to_the_admin_api_is_answered_408(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open],
) -> None:
    outlay = await make_outlay(body_timeout_s=SHORT_S)
    reader, writer = await opener(outlay)()
    writer.write(b"POST /admin/v1/keys HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer adm\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"agent\"")
    status, _, body = await answer(reader)
    assert status == 408, body
    assert (await until_closed(reader, CLOSE_S))[0] == b""


async def test_past_max_connections_new_ones_are_closed_at_once(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open], caplog: pytest.LogCaptureFixture,
) -> None:
    outlay = await make_outlay(max_connections=3)
    open_one = opener(outlay)
    secret = await secret_of(outlay)
    site = cast(ServedByH1, outlay.client.server).site
    assert site.h1 is not None
    lean, handed, silent = await open_one(), await open_one(), await open_one()
    lean[1].write(chat_request(secret))
    assert (await answer(lean[0]))[0] == 200
    handed[1].write(HEALTHZ)  # this one is aiohttp's now, and still counts
    assert (await answer(handed[0]))[0] == 200
    assert site.h1.open == 3

    refused, _ = await open_one()
    got, took = await until_closed(refused, CLOSE_S)
    assert (got, took < CLOSE_S) == (b"", True)
    assert "closing new connections at once: 3 are open (server.max_connections: 3)" in (
        caplog.text)
    # the open ones keep working
    lean[1].write(chat_request(secret))
    assert (await answer(lean[0]))[0] == 200
    handed[1].write(HEALTHZ)
    assert (await answer(handed[0]))[0] == 200
    silent[1].write(chat_request(secret, body={**CHAT, "user": "3"}))
    assert (await answer(silent[0]))[0] == 200

    # one gone (the handed-over one), and a new connection is taken again
    handed[1].close()
    await counted_down(site.h1, 2)
    await paying_call(open_one, secret)


async def test_every_connection_is_counted_out_when_it_closes(
    make_outlay: MakeOutlay, opener: Callable[[Outlay], Open],
) -> None:
    outlay = await make_outlay()
    open_one = opener(outlay)
    site = cast(ServedByH1, outlay.client.server).site
    assert site.h1 is not None
    conns: list[Conn] = [await open_one() for _ in range(4)]
    conns[0][1].write(HEALTHZ)
    conns[1][1].write(b"\x16\x03\x01garbage")  # refused by aiohttp, which closes it
    conns[2][1].write(chat_request("olk_unknown"))
    assert (await answer(conns[0][0]))[0] == 200
    assert (await answer(conns[2][0]))[0] == 401
    for _, writer in conns:
        writer.close()
    await counted_down(site.h1, 0)
    assert not site.h1.connections
