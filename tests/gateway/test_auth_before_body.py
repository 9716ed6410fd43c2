"""An agent request's key is judged from its head (gateway/keycheck.py): a refused key gets
its 401 without its body being waited for or parsed, and a large body is not drained."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from outlay.gateway import llm, vendors
from outlay.gateway.context import GATEWAY, Gateway
from outlay.policy.errors import AuthError
from outlay.state.base import StateError

from .conftest import AsServed, ServedByH1
from .fakes import CHAT, WAIT_S, MakeOutlay, Outlay, error_of
from .test_h1 import answer, chat_request

BIG = 4 * 1024 * 1024
ACME = {"acme": {"base_url": "http://127.0.0.1:9", "auth": "bearer", "secret": "s",
                 "rules": [{"method": "POST", "path": "/v1/jobs", "usd": 0.01}]}}


def gateway(outlay: Outlay) -> Gateway:
    return outlay.client.server.app[GATEWAY]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the LLM routes parse (decode as JSON)."""
    seen: list[bytes] = []
    real = llm.parse_json_object

    def counting(content_type: str, body: bytes) -> dict[str, Any]:
        seen.append(body)
        return real(content_type, body)

    monkeypatch.setattr(llm, "parse_json_object", counting)
    return seen


async def refused_key(outlay: Outlay, kind: str) -> tuple[str | None, str]:
    """A credential of `kind` and the code it is refused with."""
    if kind == "no key":
        return None, "invalid_api_key"
    if kind == "unknown key":
        return "olk_never-minted", "invalid_api_key"
    minted = await outlay.mint(ttl_seconds=30) if kind == "expired key" else await outlay.mint()
    if kind == "revoked key":
        await outlay.admin("POST", f"keys/{minted['id']}/revoke")
        return minted["key"], "key_revoked"
    outlay.clock.advance(60)
    return minted["key"], "key_expired"


@pytest.mark.parametrize("kind", ["no key", "unknown key", "revoked key", "expired key"])
async def test_a_refused_key_is_answered_without_parsing_the_body(
    outlay: Outlay, parses: list[bytes], kind: str,
) -> None:
    secret, code = await refused_key(outlay, kind)
    resp = await outlay.chat(secret)
    assert resp.status == 401
    assert error_of(await resp.json(), "openai")["code"] == code
    assert parses == []
    [entry] = await outlay.audit()
    assert (entry["request_id"], entry["decision"], entry["status"], entry["code"]) == (
        resp.headers["X-Outlay-Request-Id"], "refused", 401, code)
    assert outlay.upstream.requests == []


async def test_the_same_call_with_a_good_key_is_parsed_once(
    outlay: Outlay, key: dict[str, Any], parses: list[bytes],
) -> None:
    assert (await outlay.chat(key["key"])).status == 200
    assert [orjson.loads(body) for body in parses] == [CHAT]


async def open_raw(outlay: Outlay) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = outlay.client.server
    return await asyncio.open_connection(server.host, server.port)


def head_of(secret: str, length: int, path: str = "/v1/chat/completions") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_large_body_is_not_waited_for_and_its_connection_closes(
    outlay: Outlay, parses: list[bytes], path: str,
) -> None:
    reader, writer = await open_raw(outlay)
    try:
        writer.write(head_of("olk_unknown", BIG, path) + b'{"model": "test-gpt", ')
        status, headers, body = await answer(reader)  # before the body is sent
        assert status == 401, body
        assert headers["Connection"] == "close"
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
    finally:
        writer.close()
    assert parses == []


async def test_a_small_unread_body_keeps_the_connection_on_the_lean_server(
    outlay: Outlay, key: dict[str, Any], server: type[AsServed],
) -> None:
    body = orjson.dumps(CHAT)
    reader, writer = await open_raw(outlay)
    try:
        writer.write(head_of("olk_unknown", len(body)) + body[:10])
        status, headers, _ = await answer(reader)
        assert status == 401
        if server is not ServedByH1:
            # aiohttp's server drains nothing: a body not all here closes the connection
            assert headers["Connection"] == "close"
            return
        assert "Connection" not in headers
        writer.write(body[10:])  # dropped as it arrives; the next request is read after it
        writer.write(chat_request(key["key"]))
        status, _, answer_body = await answer(reader)
        assert status == 200, answer_body
    finally:
        writer.close()


async def test_a_refused_request_whose_body_is_all_here_keeps_the_connection(
    outlay: Outlay, key: dict[str, Any], parses: list[bytes],
) -> None:
    reader, writer = await open_raw(outlay)
    try:
        writer.write(chat_request("olk_unknown") + chat_request(key["key"]))
        status, headers, _ = await answer(reader)
        assert (status, "Connection" in headers) == (401, False)
        assert (await answer(reader))[0] == 200
    finally:
        writer.close()
    assert len(parses) == 1


async def test_a_key_revoked_while_it_is_kept_is_refused_at_once(
    outlay: Outlay, key: dict[str, Any], parses: list[bytes],
) -> None:
    now = [0.0]
    gateway(outlay).keys.clock = lambda: now[0]
    assert (await outlay.chat(key["key"])).status == 200  # the key is kept for a second
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    resp = await outlay.chat(key["key"])
    # the store, which admits every call, refuses it: only its body was read once more
    assert resp.status == 401
    assert error_of(await resp.json(), "openai")["code"] == "key_revoked"
    assert len(parses) == 2
    now[0] += 1.0  # the kept key is read again: refused from the head
    assert (await outlay.chat(key["key"])).status == 401
    assert len(parses) == 2


async def test_a_store_that_cannot_say_leaves_the_call_to_the_store(
    outlay: Outlay, key: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(_: str) -> None:
        raise StateError("the store is away")

    monkeypatch.setattr(outlay.store, "key_by_hash", unreachable)
    assert (await outlay.chat(key["key"])).status == 200
    assert (await outlay.chat("olk_unknown")).status == 401  # the store refuses it


async def test_a_key_the_store_admits_after_all_is_decided_again_with_its_body(
    outlay: Outlay, key: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a store whose refused keys can come back: the head's refusal meets an admission
    async def refuse(*_: object) -> AuthError:
        return AuthError("key_revoked", "stale")

    monkeypatch.setattr(gateway(outlay).keys, "refusal", refuse)
    resp = await outlay.chat(key["key"])
    assert resp.status == 200, await resp.text()
    entries = await outlay.audit()
    assert sorted((e["decision"], e["settlement"]) for e in entries) == [
        ("allowed", "settled"), ("allowed", "void")]
    assert [e["reserved_usd"] for e in entries if e["settlement"] == "void"] == ["0"]
    assert len(outlay.upstream.requests) == 1


async def test_a_vendor_call_with_a_refused_key_is_answered_before_its_body(
    make_outlay: MakeOutlay, monkeypatch: pytest.MonkeyPatch,
) -> None:
    outlay = await make_outlay(vendors=ACME)
    reads: list[object] = []
    real = vendors.read_body

    async def counting(*args: Any) -> bytes:
        reads.append(args)
        return await real(*args)

    monkeypatch.setattr(vendors, "read_body", counting)
    reader, writer = await open_raw(outlay)
    try:
        writer.write(head_of("olk_unknown", BIG, "/vendors/acme/v1/jobs") + b"{")
        status, headers, body = await answer(reader)
        assert status == 401, body
        assert json_code(body) == "invalid_api_key"
        assert headers["Connection"] == "close"
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
    finally:
        writer.close()
    assert reads == []
    [entry] = await outlay.audit()
    assert (entry["decision"], entry["status"], entry["code"]) == (
        "refused", 401, "invalid_api_key")


def json_code(body: bytes) -> str:
    code: str = orjson.loads(body)["error"]["code"]
    return code


async def test_calls_of_one_key_arriving_while_it_is_read_share_that_read() -> None:
    from outlay.gateway.keycheck import KeyCheck
    from outlay.policy.decision import KeyInfo

    reads: list[str] = []
    release = asyncio.Event()

    class Store:
        async def key_by_hash(self, key_hash: str) -> KeyInfo | None:
            reads.append(key_hash)
            await release.wait()
            return None if key_hash == "unknown" else KeyInfo("k1", "bot", None, {}, None,
                                                               False)

    check = KeyCheck(Store())  # type: ignore[arg-type]
    waiting = [asyncio.create_task(check.refusal(h, 0)) for h in ["good"] * 5 + ["unknown"] * 3]
    await asyncio.sleep(0)
    waiting[1].cancel()  # a caller gone while it waits leaves the read to the others
    release.set()
    done = await asyncio.wait_for(asyncio.gather(waiting[0], *waiting[2:]), WAIT_S)
    assert sorted(reads) == ["good", "unknown"]  # one read of each key, not one per call
    assert done[:4] == [None] * 4  # the store decides the good key's calls
    assert all(isinstance(refusal, AuthError) for refusal in done[4:])
    assert (await check.refusal("good", 0)) is None
    assert len(reads) == 2
    with pytest.raises(asyncio.CancelledError):
        await waiting[1]


async def test_a_read_whose_caller_is_cancelled_is_made_again_for_those_waiting() -> None:
    from outlay.gateway.keycheck import KeyCheck

    reads: list[str] = []
    release = asyncio.Event()

    class Store:
        async def key_by_hash(self, key_hash: str) -> None:
            reads.append(key_hash)
            await release.wait()

    check = KeyCheck(Store())  # type: ignore[arg-type]
    waiting = [asyncio.create_task(check.refusal("unknown", 0)) for _ in range(4)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # the caller making the read
    await asyncio.sleep(0)
    release.set()
    done = await asyncio.wait_for(asyncio.gather(*waiting[1:]), WAIT_S)
    assert reads == ["unknown", "unknown"]  # read again once, for all three waiting
    assert all(isinstance(refusal, AuthError) for refusal in done)
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]


async def test_a_failed_read_is_not_kept_and_each_waiting_call_goes_to_the_store() -> None:
    from outlay.gateway.keycheck import KeyCheck

    reads: list[str] = []

    class Store:
        async def key_by_hash(self, key_hash: str) -> None:
            reads.append(key_hash)
            await asyncio.sleep(0)
            raise StateError("the store is away")

    check = KeyCheck(Store())  # type: ignore[arg-type]
    done = await asyncio.wait_for(
        asyncio.gather(*(check.refusal("good", 0) for _ in range(3))), WAIT_S)
    assert done == [None] * 3
    assert reads == ["good"]
    assert await check.refusal("good", 0) is None
    assert reads == ["good", "good"]
