"""How calls that go wrong are settled, through the real server: provider refusals are void,
broken connections are charged in full, and a revoked or expired key's stream is cut within
a second on whichever worker holds it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from .harness import Gateway, Launch, micros, unique

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]
# A slow provider: the first chunk after 2 s, then one every 100 ms for about 2.7 s more.
SLOW = {"simulated": {"latency_ms": 2000}}
CUT_WITHIN_S = 1.0


def budgeted_client(gateway: Gateway, prefix: str) -> tuple[openai.OpenAI, str]:
    minted = gateway.mint_key(
        unique(prefix), policy={"budgets": [{"usd": 1, "period": "day", "mode": "hard"}]})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                           timeout=15)
    return client, f"key:{minted['id']}"


def assert_nothing_held(gateway: Gateway, scope: str, spent: int) -> None:
    budget = gateway.budget(scope)
    assert micros(budget["reserved_usd"]) == 0
    assert micros(budget["spent_usd"]) == spent


def test_provider_refusal_voids_the_reservation(gateway: Gateway) -> None:
    client, scope = budgeted_client(gateway, "void")
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-error-400", messages=MESSAGES, max_tokens=50)
    assert "Simulated error 400" in caught.value.message  # the provider's own words
    (entry,) = gateway.audit(scope)
    assert (entry["decision"], entry["status"], entry["settlement"]) == ("allowed", 400, "void")
    assert micros(entry["reserved_usd"]) > 0
    assert micros(entry["cost_usd"]) == 0
    assert_nothing_held(gateway, scope, 0)


def test_connection_lost_after_sending_is_charged_in_full(gateway: Gateway) -> None:
    client, scope = budgeted_client(gateway, "broken")
    with client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="sim-break", messages=MESSAGES, max_tokens=50)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unavailable"
    (entry,) = gateway.audit(scope)
    assert entry["settlement"] == "unsettled"
    reserved = micros(entry["reserved_usd"])
    assert reserved > 0
    assert micros(entry["cost_usd"]) == reserved
    assert_nothing_held(gateway, scope, reserved)


def test_stream_broken_mid_way_is_charged_in_full(gateway: Gateway) -> None:
    client, scope = budgeted_client(gateway, "broken-stream")
    with client, pytest.raises(openai.APIConnectionError):
        for _ in client.chat.completions.create(model="sim-break", messages=MESSAGES,
                                                max_tokens=50, stream=True):
            pass
    (entry,) = gateway.audit(scope)
    assert (entry["status"], entry["settlement"]) == (200, "unsettled")
    reserved = micros(entry["reserved_usd"])
    assert micros(entry["cost_usd"]) == reserved > 0
    assert_nothing_held(gateway, scope, reserved)


def test_unknown_price_under_a_hard_budget_is_refused(gateway: Gateway) -> None:
    client, scope = budgeted_client(gateway, "no-price")
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="model-nobody-priced", messages=MESSAGES)
    assert caught.value.code == "price_unknown"
    (entry,) = gateway.audit(scope)
    assert (entry["decision"], entry["code"]) == ("refused", "price_unknown")
    assert_nothing_held(gateway, scope, 0)


def _stream_until_cut(client: openai.OpenAI,
                      on_second_chunk: Callable[[], None] | None = None) -> float:
    """Read a slow stream; return when it was cut. Fails if it runs to its end."""
    chunks = 0
    with pytest.raises(openai.APIConnectionError):  # noqa: PT012 (the cut comes mid-iteration)
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                stream=True):
            chunks += 1
            if chunks == 2 and on_second_chunk is not None:
                on_second_chunk()
    assert chunks >= 2, "the stream was cut before it started"
    return time.monotonic()


async def _burst(url: str, key: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=15,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        body = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": MESSAGES}
        return await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body) for _ in range(count)))


def _settled_entry(gateway: Gateway, key_id: str) -> dict[str, Any]:
    """The key's one ledger entry once settled: the worker that served the call applies its
    settlement within milliseconds, and the admin call may land on another worker."""
    deadline = time.monotonic() + 2
    while True:
        (entry,) = gateway.audit(f"key:{key_id}")
        if entry["settlement"] != "pending" or time.monotonic() > deadline:
            return entry
        time.sleep(0.01)


def test_revoked_and_expired_keys_have_their_streams_cut(launch: Launch) -> None:
    slow = launch(SLOW, workers=2, name="slow")

    # revoked mid-stream, through whichever worker the admin call lands on
    minted = slow.mint_key(unique("cut-revoked"))
    revoked_at: list[float] = []

    def revoke() -> None:
        slow.revoke(minted["id"])
        revoked_at.append(time.monotonic())

    with openai.OpenAI(base_url=f"{slow.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        cut_at = _stream_until_cut(client, revoke)
    assert cut_at - revoked_at[0] <= CUT_WITHIN_S
    entry = _settled_entry(slow, minted["id"])
    assert entry["settlement"] == "unsettled"
    assert micros(entry["cost_usd"]) == micros(entry["reserved_usd"])
    # and every worker refuses the key at once
    answers = asyncio.run(_burst(slow.url, minted["key"], 12))
    assert Counter(a.status_code for a in answers) == {401: 12}
    assert {a.json()["error"]["code"] for a in answers} == {"key_revoked"}

    # expired mid-stream: the key lives 3 s, the stream would run for about 4.7 s
    minted = slow.mint_key(unique("cut-expired"), ttl_seconds=3)
    expires_at = time.monotonic() + 3
    with openai.OpenAI(base_url=f"{slow.url}/v1", api_key=minted["key"], max_retries=0,
                       timeout=15) as client:
        cut_at = _stream_until_cut(client)
    assert cut_at - expires_at <= CUT_WITHIN_S
    entry = _settled_entry(slow, minted["id"])
    assert entry["settlement"] == "unsettled"
