"""SPEC §2: a revoked or expired key's streams in flight are cut within one second, and what
they held is charged in full (what the provider did meanwhile cannot be known)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientResponse, ServerDisconnectedError

from .fakes import (
    CHAT,
    MESSAGE,
    SSE_HEADERS,
    WAIT_S,
    Outlay,
    Reply,
    anthropic_stream,
    error_of,
    openai_stream,
    read_at_least,
    read_rest,
)


async def open_stream(outlay: Outlay, secret: str, anthropic: bool = False) -> ClientResponse:
    """A stream that has delivered its first chunk and waits on the provider for the rest."""
    chunks = anthropic_stream() if anthropic else openai_stream()
    outlay.upstream.script(Reply(headers=SSE_HEADERS, chunks=chunks, pause_after=1))
    if anthropic:
        resp: ClientResponse = await outlay.messages(secret, {**MESSAGE, "stream": True})
    else:
        resp = await outlay.chat(secret, {**CHAT, "stream": True})
    assert resp.status == 200
    assert await read_at_least(resp, len(chunks[0])) == chunks[0]
    return resp


async def assert_cut_and_charged(outlay: Outlay, resp: ClientResponse) -> None:
    rid = resp.headers["X-Outlay-Request-Id"]
    _, cut = await read_rest(resp)  # bounded: fails if the stream is not cut within 1 s
    assert cut, "a cut stream must not end like a finished one"
    outcome = await outlay.store.wait_settled(rid)
    assert outcome.settled == "unsettled"
    entry = next(e for e in await outlay.audit() if e["request_id"] == rid)
    assert entry["settlement"] == "unsettled"
    assert entry["cost_usd"] == entry["reserved_usd"]
    budget = await outlay.budget("global")
    assert budget["spent_usd"] == entry["reserved_usd"]
    assert budget["reserved_usd"] == "0"
    assert all(answer.closed for answer in outlay.upstream.responses)  # connections released


async def test_revoking_a_key_cuts_its_stream(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": 10}]})
    resp = await open_stream(outlay, key["key"])
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    await assert_cut_and_charged(outlay, resp)
    again = await outlay.chat(key["key"])
    assert again.status == 401
    assert error_of(await again.json(), "openai")["code"] == "key_revoked"


async def test_revoking_cuts_an_anthropic_stream(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": 10}]})
    resp = await open_stream(outlay, key["key"], anthropic=True)
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    await assert_cut_and_charged(outlay, resp)


async def test_a_revocation_made_elsewhere_is_noticed(outlay: Outlay,
                                                      key: dict[str, Any]) -> None:
    """Another replica (or worker) revokes the key in the shared store: no admin call here."""
    await outlay.set_policy("global", {"budgets": [{"usd": 10}]})
    resp = await open_stream(outlay, key["key"])
    await outlay.store.revoke_key(key["id"])
    await assert_cut_and_charged(outlay, resp)


async def test_a_stream_outliving_its_key_ttl_is_cut(outlay: Outlay) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": 10}]})
    minted = await outlay.mint(ttl_seconds=30, labels={"run": "r-1"})
    resp = await open_stream(outlay, minted["key"])
    outlay.clock.advance(30)
    await assert_cut_and_charged(outlay, resp)


async def test_other_keys_streams_run_on(outlay: Outlay, key: dict[str, Any]) -> None:
    other = await outlay.mint("agent-b")
    doomed = await open_stream(outlay, key["key"])
    survivor = await open_stream(outlay, other["key"])
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    _, cut = await read_rest(doomed)
    assert cut
    outlay.upstream.release.set()
    rest, cut = await read_rest(survivor)
    assert not cut
    assert rest.endswith(b"data: [DONE]\n\n")
    outcome = await outlay.store.wait_settled(survivor.headers["X-Outlay-Request-Id"])
    assert outcome.settled == "settled"


async def test_every_stream_of_the_key_is_cut(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": 10}]})
    first = await open_stream(outlay, key["key"])
    second = await open_stream(outlay, key["key"], anthropic=True)
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    for resp in (first, second):
        _, cut = await read_rest(resp)
        assert cut
        outcome = await outlay.store.wait_settled(resp.headers["X-Outlay-Request-Id"])
        assert outcome.settled == "unsettled"
    assert (await outlay.budget("global"))["reserved_usd"] == "0"


async def test_a_whole_answer_in_flight_is_cut_too(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"budgets": [{"usd": 10}]})
    outlay.upstream.script(Reply(body=b'{"usage": {}}', pause_after=0))
    call = asyncio.create_task(outlay.chat(key["key"]))
    async with asyncio.timeout(WAIT_S):
        await outlay.upstream.paused.wait()  # the provider has the request, no answer yet
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    with pytest.raises(ServerDisconnectedError):
        async with asyncio.timeout(WAIT_S):
            await call
    [entry] = [e for e in await outlay.audit() if e["decision"] == "allowed"]
    assert entry["settlement"] == "unsettled"
    assert entry["cost_usd"] == entry["reserved_usd"]


async def test_a_cut_gives_back_its_parallel_slot(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"max_parallel": 1})
    resp = await open_stream(outlay, key["key"])
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    await read_rest(resp)
    await outlay.store.wait_settled(resp.headers["X-Outlay-Request-Id"])
    fresh = await outlay.mint()  # same agent, same max_parallel
    assert (await outlay.chat(fresh["key"])).status == 200
