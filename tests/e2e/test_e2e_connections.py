"""Hostile connections against a real `outlay serve`, on raw sockets: malformed heads are
answered and closed at once, slow and idle connections are closed after their time while
paying calls go on, past max_connections new connections are closed, a refused key's large
body is not read, and /metrics can require a token."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from .harness import ADMIN_TOKEN, Gateway, Launch, unique

pytestmark = pytest.mark.e2e

CLOSE_S = 1.0
SHORT_S = 0.5
CHAT = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
METRICS_TOKEN = "e2e-scrape-token-0123456789"


def chat_request(secret: str, body: bytes | None = None) -> bytes:
    data = json.dumps(CHAT).encode() if body is None else body
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {secret}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


async def connect(gateway: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.port)


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length body: status, headers (lower case), body."""
    async with asyncio.timeout(CLOSE_S * 5):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(head[0].split(" ")[1]), headers, body


async def until_closed(reader: asyncio.StreamReader, within_s: float) -> tuple[bytes, float]:
    start = time.monotonic()
    data = b""
    async with asyncio.timeout(within_s):
        while chunk := await reader.read(65536):
            data += chunk
    return data, time.monotonic() - start


async def gone(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (a reset counts: closing a socket with
    bytes it did not read resets it) within CLOSE_S, sending nothing more."""
    try:
        got, _ = await until_closed(reader, CLOSE_S)
    except ConnectionResetError:
        return True
    return got == b""


async def paying_call(gateway: Gateway, secret: str) -> None:
    reader, writer = await connect(gateway)
    try:
        writer.write(chat_request(secret))
        status, _, body = await answer(reader)
        assert status == 200, body
    finally:
        writer.close()


MALFORMED = {
    "bare LF": (b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),
    "bare LF on an LLM route": (b"POST /v1/chat/completions HTTP/1.1\nHost: x\n"
                                b"Content-Length: 2\n\n{}", 400),
    "bare CR": (b"GET /healthz HTTP/1.1\rHost: x\r\r", 400),
    "garbage without CRLF": (b"hello there, this is not http", 400),
    "TLS ClientHello": (bytes.fromhex("16030100c4010000c00303") + bytes(40), 400),
    "non-UTF-8 request line": (b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "non-UTF-8 header name": (b"POST /v1/chat/completions HTTP/1.1\r\nX-\xc3(: a\r\n"
                              b"Content-Length: 2\r\n\r\n{}", 400),
    "oversized head": (b"POST /v1/chat/completions HTTP/1.1\r\nX-Big: " + b"a" * 70_000
                       + b"\r\n\r\n", 431),
    "oversized head of many lines": (b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-%d: %s\r\n" % (n, b"a" * 4000) for n in range(20)) + b"\r\n", 431),
}


@pytest.mark.parametrize(("data", "status"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_each_malformed_head_is_answered_and_closed_within_a_second(
    gateway: Gateway, data: bytes, status: int,
) -> None:
    async def run() -> None:
        reader, writer = await connect(gateway)
        try:
            writer.write(data)
            got, took = await until_closed(reader, CLOSE_S)
        finally:
            writer.close()
        assert got.split(b" ", 2)[1] == str(status).encode(), got[:80]
        assert took < CLOSE_S

    asyncio.run(run())
    # and the gateway serves on
    assert httpx.get(f"{gateway.url}/healthz", timeout=5).status_code == 200


def test_slow_and_idle_connections_are_closed_while_paying_calls_go_on(launch: Launch) -> None:
    idle_s = 3 * SHORT_S  # longer than the header timeout, to tell the two apart
    gateway = launch({"server": {"header_timeout_s": SHORT_S, "idle_timeout_s": idle_s}})
    secret = gateway.mint_key(unique("patient"))["key"]

    async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
        for byte in data:
            writer.write(bytes([byte]))
            await asyncio.sleep(SHORT_S / 10)

    async def run() -> None:
        slow_reader, slow_writer = await connect(gateway)
        handed_reader, handed_writer = await connect(gateway)
        idle_reader, idle_writer = await connect(gateway)
        handed_writer.write(HEALTHZ)  # aiohttp's from here on
        assert (await answer(handed_reader))[0] == 200
        idle_writer.write(chat_request(secret))
        assert (await answer(idle_reader))[0] == 200
        started = time.monotonic()
        slow = [asyncio.create_task(trickle(slow_writer, chat_request(secret))),
                asyncio.create_task(trickle(handed_writer, HEALTHZ))]
        for _ in range(4):  # paying calls go on meanwhile
            await paying_call(gateway, secret)
        for reader in (slow_reader, handed_reader):  # the heads' time ran out
            got, _ = await until_closed(reader, 4 * SHORT_S)
            assert got == b""
        slow_s = time.monotonic() - started
        assert SHORT_S * 0.8 <= slow_s < idle_s
        got, _ = await until_closed(idle_reader, 2 * idle_s)
        assert got == b""
        assert time.monotonic() - started >= idle_s * 0.8
        for task in slow:
            task.cancel()
        for writer in (slow_writer, handed_writer, idle_writer):
            writer.close()

    asyncio.run(run())


def test_past_max_connections_new_ones_are_closed_and_open_ones_work(launch: Launch) -> None:
    gateway = launch({"server": {"max_connections": 3}})
    # minted on a connection of its own, closed at once, so the test holds every one
    minted = httpx.post(f"{gateway.url}/admin/v1/keys", json={"agent": unique("crowd")},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert minted.status_code == 201
    secret = minted.json()["key"]
    time.sleep(0.3)  # the server sees that connection go

    async def run() -> None:
        held = [await connect(gateway) for _ in range(3)]
        held[0][1].write(chat_request(secret))
        held[1][1].write(HEALTHZ)
        assert (await answer(held[0][0]))[0] == 200
        assert (await answer(held[1][0]))[0] == 200
        refused_reader, refused_writer = await connect(gateway)
        got, took = await until_closed(refused_reader, CLOSE_S)
        assert (got, took < CLOSE_S) == (b"", True)
        refused_writer.close()
        for reader, writer in held:  # every open one still works
            writer.write(chat_request(secret))
            assert (await answer(reader))[0] == 200
        held[1][1].close()
        await asyncio.sleep(0.3)
        await paying_call(gateway, secret)  # a place is free again
        for _, writer in held:
            writer.close()

    asyncio.run(run())


def test_a_refused_keys_large_body_is_not_read(launch: Launch) -> None:
    gateway = launch({})
    big = b'{"model": "gpt-4o-mini", "messages": [' + b'{"role": "user", "content": "x"},' * (
        4 * 1024 * 1024 // 33) + b'{"role": "user", "content": "x"}]}'

    async def timed(data: bytes, then: bytes) -> tuple[int, dict[str, str], float, bool]:
        """Send `data`, then `then` from a thread; the answer, its time, whether closed."""
        reader, writer = await connect(gateway)
        sock = writer.get_extra_info("socket")
        start = time.monotonic()
        writer.write(data)
        sender = threading.Thread(target=_send_quietly, args=(sock.dup(), then))
        sender.start()
        try:
            status, headers, _ = await answer(reader)
            took = time.monotonic() - start
            closed = headers.get("connection") == "close" and await gone(reader)
        finally:
            writer.close()
            sender.join(CLOSE_S * 5)
        return status, headers, took, closed

    async def run() -> None:
        tiny = chat_request("olk_unknown")
        status, _, tiny_s, _ = await timed(tiny, b"")
        assert status == 401
        request = chat_request("olk_unknown", big)
        head_end = request.index(b"\r\n\r\n") + 4
        status, headers, big_s, closed = await timed(request[:head_end], request[head_end:])
        assert (status, headers.get("connection"), closed) == (401, "close", True)
        # answered as fast as a tiny one: the 4 MiB were neither waited for nor parsed
        assert big_s < tiny_s + 0.1, (big_s, tiny_s)

    asyncio.run(run())
    entries = gateway.admin.get("/admin/v1/audit").json()["entries"]  # this gateway's only
    assert [(e["decision"], e["code"]) for e in entries] == [
        ("refused", "invalid_api_key")] * 2


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.settimeout(CLOSE_S * 5)
        sock.sendall(data)
    except OSError:
        pass  # the server closed the connection without reading it all: as it should
    finally:
        sock.close()


def test_metrics_behind_a_token(launch: Launch) -> None:
    gateway = launch({"server": {"metrics_token": METRICS_TOKEN}})
    for authorization in (None, "Bearer not-the-token", f"Basic {METRICS_TOKEN}"):
        headers = {} if authorization is None else {"Authorization": authorization}
        response = httpx.get(f"{gateway.url}/metrics", headers=headers, timeout=5)
        assert response.status_code == 401, authorization
        assert response.json()["error"]["code"] == "invalid_metrics_token"
    response = httpx.get(f"{gateway.url}/metrics", timeout=5,
                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert "outlay_workers" in response.text
