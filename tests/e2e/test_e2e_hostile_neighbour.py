"""One agent's bad header bytes hurt no other agent: while it sends header values that are
not UTF-8 over a raw socket (an `X-Outlay-Approval` on LLM calls, an `Idempotency-Key` on
Stripe calls), the honest agents calling beside it on the same worker get no error, every
settlement lands, and each agent's spend is the sum of its audit rows with nothing left
reserved: on the embedded store, and on Redis with PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import StartReplicas
from .harness import Gateway, Launch, micros, unique

pytestmark = pytest.mark.e2e

HONEST_AGENTS = 6
DURATION_S = 3.0
HOSTILE_LANES = 3  # connections of the bad agent at once, each sending every HOSTILE_EVERY_S
HOSTILE_EVERY_S = 0.02
ANSWER_TIMEOUT_S = 10.0
CHAT = {"model": "gpt-4o-mini", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]}
CHAT_BYTES = b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
PAYMENT = b"amount=713&currency=usd"


def raw_request(path: bytes, key: str, content_type: bytes, body: bytes, header: bytes) -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n"
            b"Content-Type: " + content_type + b"\r\n" + header + b"\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


async def honest(url: str, key: str, stop_at: float) -> Counter[int]:
    """Calls one after the other until `stop_at`: LLM calls, and every third a payment."""
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=ANSWER_TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        n = 0
        while loop.time() < stop_at:
            n += 1
            if n % 3:
                answer = await http.post("/v1/chat/completions", json=CHAT)
            else:
                answer = await http.post(
                    "/vendors/stripe/v1/payment_intents", content=PAYMENT,
                    headers={"Content-Type": "application/x-www-form-urlencoded",
                             "Idempotency-Key": f"honest-{uuid.uuid4()}"})
            statuses[answer.status_code] += 1
    return statuses


async def hostile(port: int, key: str, stop_at: float) -> Counter[int]:
    """Every HOSTILE_EVERY_S until `stop_at`, a call whose header bytes are not UTF-8,
    each on a connection of its own; the status of each answer."""
    loop = asyncio.get_running_loop()
    requests = [
        raw_request(b"/v1/chat/completions", key, b"application/json", CHAT_BYTES,
                    b"X-Outlay-Approval: apr_\xff\xfe"),
        raw_request(b"/vendors/stripe/v1/payment_intents", key,
                    b"application/x-www-form-urlencoded", PAYMENT, b"Idempotency-Key: \xff"),
    ]
    statuses: Counter[int] = Counter()
    n = 0
    while loop.time() < stop_at:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(requests[n % 2])
            await writer.drain()
            status_line = await reader.readuntil(b"\r\n")
            writer.close()
            await writer.wait_closed()
        statuses[int(status_line.split()[1])] += 1
        n += 1
        await asyncio.sleep(HOSTILE_EVERY_S)
    return statuses


async def side_by_side(gateway: Gateway, keys: list[str], bad_key: str
                       ) -> tuple[list[Counter[int]], Counter[int]]:
    stop_at = asyncio.get_running_loop().time() + DURATION_S
    answers = await asyncio.gather(
        *(honest(gateway.url, k, stop_at) for k in keys),
        *(hostile(gateway.port, bad_key, stop_at) for _ in range(HOSTILE_LANES)))
    return answers[:len(keys)], sum(answers[len(keys):], Counter())


def scraped(gateway: Gateway) -> dict[str, float]:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    return {s.name: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if not s.labels}


@pytest.fixture(params=["sqlite", "redis+postgres"])
def gateway(request: pytest.FixtureRequest, launch: Launch,
            start_replicas: StartReplicas) -> Gateway:
    """One worker on the embedded store, or one replica on Redis and PostgreSQL."""
    config = {"simulated": {"latency_ms": 0}}
    if request.param == "sqlite":
        return launch(config, workers=1, name="neighbours")
    replicas = start_replicas(1, state_url=request.getfixturevalue("redis_url"),
                              database=request.getfixturevalue("postgres_dsn"),
                              config_doc=config, name="neighbour")
    return replicas[0]


def test_bad_header_bytes_of_one_agent_fail_no_call_of_another(gateway: Gateway) -> None:
    agents = [unique("honest") for _ in range(HONEST_AGENTS)]
    bad_agent = unique("hostile")
    for agent in (*agents, bad_agent):
        # a cap no honest agent reaches in the run (a payment is $7.13)
        gateway.set_policy(f"agent:{agent}", {"budgets": [{"usd": 100_000, "period": "day"}]})
    keys = [gateway.mint_key(agent)["key"] for agent in agents]
    bad_key = gateway.mint_key(bad_agent)["key"]

    good, bad = asyncio.run(side_by_side(gateway, keys, bad_key))

    assert all(sum(c.values()) >= 10 for c in good), good  # they kept calling throughout
    assert [set(c) for c in good] == [{200}] * HONEST_AGENTS, good  # not one error
    # the bad calls are refused alone: at the edge (400) or by the store (503)
    assert sum(bad.values()) >= 10, bad
    assert set(bad) <= {400, 503}, bad

    for agent, statuses in zip(agents, good, strict=True):
        rows = gateway.audit(f"agent:{agent}", limit=1000)
        assert len(rows) < 1000  # all of them
        allowed = [r for r in rows if r["decision"] == "allowed"]
        assert len(allowed) == statuses[200]
        assert {r["settlement"] for r in allowed} == {"settled"}  # every settlement landed
        budget = gateway.budget(f"agent:{agent}")
        assert micros(budget["spent_usd"]) == sum(micros(r["cost_usd"]) for r in rows)
        assert micros(budget["spent_usd"]) > 0
        assert Decimal(budget["reserved_usd"]) == 0
    bad_budget = gateway.budget(f"agent:{bad_agent}")
    assert (micros(bad_budget["spent_usd"]), micros(bad_budget["reserved_usd"])) == (0, 0)
    metrics = scraped(gateway)
    assert metrics["outlay_settlements_waiting"] == 0
    assert metrics["outlay_settlements_abandoned_total"] == 0
