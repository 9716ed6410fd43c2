"""Traffic shaping end to end, on SQLite (2 workers) and Redis (2 replicas): a provider
endpoint's own limits, calls queued instead of refused (`on_rate_limit: queue`), and an
upstream 429 pausing its endpoint. The provider is a mock on loopback that enforces its own
60 requests per rolling minute per key and answers 429 beyond, as real ones do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .conftest import Launch, StartReplicas
from .harness import Gateway, unique
from .paced_provider import PacedProvider, paced_provider

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Say hello."}]
CROWD_WAIT_S = 2  # how long a crowd's queued call waits: the test's wall time stays short


@dataclass
class Answer:
    agent: int
    status: int
    headers: httpx.Headers
    body: dict[str, Any]
    done_at: float

    @property
    def code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


Install = Callable[[dict[str, Any]], tuple[Gateway, list[str]]]


@pytest.fixture(params=["sqlite", "redis"])
def install(request: pytest.FixtureRequest, launch: Launch,
            start_replicas: StartReplicas) -> Install:
    """One installation with `config`: 2 workers on a SQLite file, or 2 replicas sharing
    Redis (and PostgreSQL); its admin gateway and every address that serves agents."""
    def start(config: dict[str, Any]) -> tuple[Gateway, list[str]]:
        if request.param == "sqlite":
            gateway = launch(config, workers=2)
            return gateway, [gateway.url]
        replicas = start_replicas(2, state_url=request.getfixturevalue("redis_url"),
                                  database=request.getfixturevalue("postgres_dsn"),
                                  config_doc=config)
        return replicas[0], replicas.urls

    return start


def endpoint(provider: PacedProvider, key: str, **fields: Any) -> dict[str, Any]:
    return {"base_url": f"{provider.url}/v1", "api_key": key, **fields}


async def send(calls: list[tuple[int, str, str]], timeout_s: float,
               start: float | None = None, stagger_s: float = 0.0) -> list[Answer]:
    """Every call (agent, key, gateway URL) at once, or each `stagger_s` after the one before
    it (so they arrive in their order, not in the order their connections happen to open);
    their answers, each when it came."""
    limits = httpx.Limits(max_connections=len(calls) + 10,
                          max_keepalive_connections=len(calls) + 10)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        async def one(n: int, agent: int, key: str, url: str) -> Answer:
            await asyncio.sleep(n * stagger_s)
            answer = await client.post(f"{url}/v1/chat/completions", json={
                "model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 16},
                headers={"Authorization": f"Bearer {key}"})
            return Answer(agent, answer.status_code, answer.headers, answer.json(),
                          time.monotonic())

        return list(await asyncio.gather(*(one(n, *call) for n, call in enumerate(calls))))


def test_twenty_agents_share_one_provider_key_and_the_provider_never_says_429(
        install: Install) -> None:
    with paced_provider(rpm=60) as provider:
        gateway, urls = install({"providers": {"openai": {"endpoints": [
            endpoint(provider, "sk-shared", limits={"rpm": 60})]}}})
        keys = [gateway.mint_key(unique("crowd"), policy={
            "on_rate_limit": "queue", "queue_max_wait_s": CROWD_WAIT_S})["key"]
            for _ in range(20)]
        # 150 calls within 0.45 s, each agent's among the others', and every agent's calls
        # spread over every address; sent in their order, since 150 connections opened at
        # once reach the gateway in any order, and the first 60 to arrive fit the minute
        calls = [(i % 20, keys[i % 20], urls[i // 20 % len(urls)]) for i in range(150)]
        answers = asyncio.run(send(calls, timeout_s=CROWD_WAIT_S + 30, stagger_s=0.003))
        seen = provider.seen("sk-shared")

    assert seen.refused == 0  # the provider never had to refuse: Outlay paced its key
    assert len(answers) == 150  # nothing lost: every call was answered
    assert {a.status for a in answers} <= {200, 429}
    succeeded = [a for a in answers if a.status == 200]
    assert len(succeeded) == len(seen.calls) == 60
    for refused in (a for a in answers if a.status == 429):
        # the 429 it would have had, after its whole wait
        assert refused.code == "provider_rate_limited", refused.body
        assert int(refused.headers["retry-after"]) >= 1
        assert int(refused.headers["x-outlay-queued-ms"]) >= CROWD_WAIT_S * 1000 * 0.9
    first = sorted(answers, key=lambda a: a.done_at)[:60]
    assert all(a.status == 200 for a in first)
    assert {a.agent for a in first} == set(range(20))  # spread across all 20 agents


async def busy_then_other(urls: list[str], busy: str, other: str) -> list[Answer]:
    """A busy agent sends 8 calls at once; another sends 2 once the busy one's are queued."""
    first = asyncio.ensure_future(send(
        [(0, busy, urls[i % len(urls)]) for i in range(8)], timeout_s=60))
    await asyncio.sleep(0.15)
    later = await send([(1, other, urls[i % len(urls)]) for i in range(2)], 60)
    return [*await first, *later]


def test_max_parallel_2_queues_calls_and_never_sends_more_than_2_at_once(
        install: Install) -> None:
    with paced_provider(latency_s=0.3) as provider:
        gateway, urls = install({"providers": {"openai": {"endpoints": [
            endpoint(provider, "sk-narrow", limits={"max_parallel": 2})]}}})
        policy = {"on_rate_limit": "queue", "queue_max_wait_s": 30}
        busy = gateway.mint_key(unique("busy"), policy=policy)["key"]
        other = gateway.mint_key(unique("other"), policy=policy)["key"]
        answers = asyncio.run(busy_then_other(urls, busy, other))
        seen = provider.seen("sk-narrow")

    assert [a.status for a in answers] == [200] * 10
    assert seen.most_in_flight == 2  # never more than 2 upstream at once, and 2 were used
    assert len(seen.calls) == 10
    assert seen.refused == 0
    assert sum(1 for a in answers if int(a.headers.get("x-outlay-queued-ms", "0")) > 0) >= 6


def test_waiting_calls_take_turns_across_agents(launch: Launch) -> None:
    # one worker: its queue serves the agents round-robin (across workers and replicas the
    # turns are each worker's own)
    with paced_provider(latency_s=0.3) as provider:
        gateway = launch({"providers": {"openai": {"endpoints": [
            endpoint(provider, "sk-turns", limits={"max_parallel": 2})]}}})
        policy = {"on_rate_limit": "queue", "queue_max_wait_s": 30}
        busy = gateway.mint_key(unique("busy"), policy=policy)["key"]
        other = gateway.mint_key(unique("other"), policy=policy)["key"]
        answers = asyncio.run(busy_then_other([gateway.url], busy, other))

    assert [a.status for a in answers] == [200] * 10
    busy_done = sorted(a.done_at for a in answers if a.agent == 0)
    # the other agent's calls were served in turn with the busy one's, not after them all
    assert max(a.done_at for a in answers if a.agent == 1) < busy_done[-3]


def test_an_upstream_429_pauses_its_endpoint_and_the_call_goes_to_the_other(
        install: Install) -> None:
    with paced_provider() as provider:
        # the first endpoint is tried first (nearly always, by weight)
        gateway, urls = install({"providers": {"openai": {"endpoints": [
            endpoint(provider, "sk-first", weight=100_000),
            endpoint(provider, "sk-second")]}}})
        minted = gateway.mint_key(unique("failover"))
        provider.refuse_next["sk-first"] = 2  # its next answer: 429, Retry-After: 2
        answers = [asyncio.run(send([(0, minted["key"], urls[0])], 30))[0]]
        paused_by = time.monotonic()  # the pause began before the first call's answer
        answers += [asyncio.run(send([(0, minted["key"], urls[i % len(urls)])], 30))[0]
                    for i in range(1, 5)]
        during = list(provider.seen("sk-first").calls)
        time.sleep(max(0.0, paused_by + 2.3 - time.monotonic()))
        after = asyncio.run(send([(0, minted["key"], urls[0])], 30))[0]
        first, second = provider.seen("sk-first"), provider.seen("sk-second")
        rows = gateway.audit(f"key:{minted['id']}")

    assert [a.status for a in answers] == [200] * 5  # the agent never saw the 429
    assert first.refused == 1
    assert during == []  # no call reached the paused endpoint during its pause
    assert len(second.calls) == 5
    assert after.status == 200
    assert len(first.calls) == 1  # back in use once the pause ended
    # the call sent to the paused endpoint was released, never charged
    voided = [r for r in rows if r["status"] == 429]
    assert len(voided) == 1
    assert voided[0]["settlement"] == "void"


def test_an_upstream_429_on_the_only_endpoint_is_queued_until_its_pause_ends(
        install: Install) -> None:
    with paced_provider() as provider:
        gateway, urls = install({"providers": {"openai": {"endpoints": [
            endpoint(provider, "sk-only")]}}})
        queued = gateway.mint_key(unique("paused"), policy={
            "on_rate_limit": "queue", "queue_max_wait_s": 10})
        plain = gateway.mint_key(unique("plain"))
        provider.refuse_next["sk-only"] = 1
        answer = asyncio.run(send([(0, queued["key"], urls[0])], 30))[0]
        # the pause holds for every address; a call whose policy does not queue is refused
        # by Outlay, without reaching the provider
        provider.refuse_next["sk-only"] = 1
        passed = asyncio.run(send([(1, plain["key"], urls[-1])], 30))[0]
        refused = asyncio.run(send([(1, plain["key"], urls[0])], 30))[0]
        seen = provider.seen("sk-only")

    assert answer.status == 200
    assert 500 <= int(answer.headers["x-outlay-queued-ms"]) < 5_000
    # the provider's own 429 reaches a call that neither another endpoint nor a queue takes
    assert passed.status == 429
    assert passed.body["error"]["message"] == "Rate limit reached"
    assert refused.status == 429
    assert refused.code == "provider_rate_limited"
    assert seen.refused == 2
    assert len(seen.calls) == 1


def test_a_call_admitted_on_an_unreachable_endpoint_goes_to_the_next(
        install: Install) -> None:
    with paced_provider() as provider:
        gateway, urls = install({"providers": {"openai": {"endpoints": [
            # nothing listens on port 9 of loopback: nearly always tried first, by weight
            {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-gone", "weight": 100_000,
             "limits": {"rpm": 1000}},
            endpoint(provider, "sk-there", limits={"rpm": 1000})]}}})
        minted = gateway.mint_key(unique("unreachable"))
        answers = [asyncio.run(send([(0, minted["key"], url)], 30))[0] for url in urls * 2]
        rows = gateway.audit(f"key:{minted['id']}")

    assert [a.status for a in answers] == [200] * len(answers)
    assert len(provider.seen("sk-there").calls) == len(answers)
    # the call admitted on the endpoint that could not be reached was voided, not charged
    assert all(r["settlement"] == "void" for r in rows if r["status"] == 502)
    assert any(r["status"] == 502 for r in rows)
