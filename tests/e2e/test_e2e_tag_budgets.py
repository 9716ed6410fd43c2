"""Budgets per tag value through real `outlay serve` processes: one `tag:customer=*` policy
gives each of 100 customers its own $0.001 a day, and 20 calls at once per customer, on two
workers of one SQLite file and on two replicas of one Redis + PostgreSQL state, never take
a customer past its cap by one micro-dollar; a required tag, labels a tag cannot override,
and the budget an answer reports, read by the Python SDK."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from outlay.sdk import budget_of

from .harness import EXACT_MODEL, EXACT_PRICES, EXACT_TOKENS, Gateway, Launch, micros, unique
from .replicas import Replicas

pytestmark = pytest.mark.e2e

StartReplicas = Callable[..., Replicas]
PER_CALL = EXACT_TOKENS * EXACT_PRICES[EXACT_MODEL]["output"]  # 240 micro-USD, reserved == cost
CAP = 1_000  # $0.001 a day per customer: four whole calls (960), never a fifth
VALUES, PER_VALUE = 100, 20
# customers whose 20 calls each are in flight at once: 200 calls on two workers; 80 across
# two replicas, whose Redis client keeps at most 100 connections per process (redis-py's
# default pool): past that a replica answers 503, whatever the budgets
AT_ONCE, AT_ONCE_REPLICAS = 10, 4
BODY = {"model": EXACT_MODEL, "max_tokens": EXACT_TOKENS,
        "messages": [{"role": "user", "content": "hi"}]}
CONFIG: dict[str, Any] = {"simulated": {"latency_ms": 150}, "prices": EXACT_PRICES}


async def _race(urls: list[str], key: str, tag: str, values: list[str], at_once: int
                ) -> dict[str, list[httpx.Response]]:
    """PER_VALUE calls per value, all of a value's at once, spread over `urls`; AT_ONCE
    values at a time."""
    limits = httpx.Limits(max_connections=at_once * PER_VALUE)
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {key}"}) for url in urls]
    answers: dict[str, list[httpx.Response]] = {}
    try:
        for first in range(0, len(values), at_once):
            batch = values[first:first + at_once]
            calls = [clients[i % len(clients)].post(
                "/v1/chat/completions", json=BODY, headers={"X-Outlay-Tags": f"{tag}={v}"})
                for v in batch for i in range(PER_VALUE)]
            done = await asyncio.gather(*calls)
            for n, value in enumerate(batch):
                answers[value] = list(done[n * PER_VALUE:(n + 1) * PER_VALUE])
    finally:
        for client in clients:
            await client.aclose()
    return answers


def check_race(gateways: list[Gateway], key: str, tag: str, at_once: int = AT_ONCE) -> None:
    values = [f"cust{i:03d}" for i in range(VALUES)]
    gateways[0].set_policy(f"tag:{tag}=*", {"budgets": [{"usd": "0.001", "period": "day"}]})
    answers = asyncio.run(_race([g.url for g in gateways], key, tag, values, at_once))
    for value in values:
        statuses = Counter(a.status_code for a in answers[value])
        assert set(statuses) <= {200, 402}, {a.status_code: a.text for a in answers[value]}
        # every admitted call costs what it reserved: exactly the four that fit, per value
        assert statuses[200] == CAP // PER_CALL, (value, statuses)
        for refused in (a for a in answers[value] if a.status_code == 402):
            error = refused.json()["error"]
            assert (error["code"], error["scope"]) == ("budget_exceeded", f"tag:{tag}={value}")
    usage = gateways[-1].usage(f"tag:{tag}=*")
    assert usage["values_seen"] == VALUES
    assert len(usage["values"]) == 100
    for line in usage["values"]:
        [budget] = line["budgets"]
        assert micros(budget["spent_usd"]) == 4 * PER_CALL <= CAP, line
        assert micros(budget["reserved_usd"]) == 0, line
    for value in values[:3]:  # the ledger agrees with the counters
        entries = gateways[-1].audit(f"tag:{tag}={value}")
        assert len(entries) == PER_VALUE
        assert sum(micros(e["cost_usd"]) for e in entries) == 4 * PER_CALL
    # a customer that spent nothing yet is not held back by the others
    other = httpx.post(f"{gateways[0].url}/v1/chat/completions", json=BODY, timeout=30,
                       headers={"Authorization": f"Bearer {key}",
                                "X-Outlay-Tags": f"{tag}=newcomer"})
    assert other.status_code == 200, other.text
    assert other.headers["x-outlay-budget-scope"] == f"tag:{tag}=newcomer"
    assert micros(other.headers["x-outlay-budget-remaining-usd"]) == CAP - PER_CALL


def test_each_customer_is_held_to_its_cap_on_two_workers(launch: Launch) -> None:
    gateway = launch(CONFIG, workers=2, name="tags")
    key = gateway.mint_key(unique("tagged"))["key"]
    check_race([gateway], key, "customer")


def test_each_customer_is_held_to_its_cap_across_two_replicas(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(2, state_url=redis_url, database=postgres_dsn, config_doc=CONFIG)
    key = replicas[0].mint_key(unique("tagged"))["key"]
    check_race(list(replicas), key, "customer", AT_ONCE_REPLICAS)


def test_required_tags_key_labels_and_the_budget_the_sdk_reads(gateway: Gateway) -> None:
    tag = unique("cust").replace("-", "_")
    agent = unique("tag-rules")
    minted = gateway.mint_key(agent, labels={tag: "acme"},
                              policy={"required_tags": ["workflow"]})
    gateway.set_policy(f"tag:{tag}=acme", {"budgets": [{"usd": "0.01", "period": "day"}]})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0)
    chat = {"model": "gpt-4o-mini", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**chat)  # type: ignore[call-overload]
    assert refused.value.code == "missing_tag"
    [row] = gateway.audit(f"key:{minted['id']}")
    assert (row["decision"], row["code"], row["cost_usd"]) == ("refused", "missing_tag", "0")

    # the header cannot move the call off the key's own customer
    raw = client.chat.completions.with_raw_response.create(  # type: ignore[call-overload]
        **chat, extra_headers={"X-Outlay-Tags": f"workflow=nightly, {tag}=someone-else"})
    left = budget_of(raw)
    assert left is not None
    assert left.scope == f"tag:{tag}=acme"
    assert Decimal("0") < left.remaining_usd < Decimal("0.01")
    assert raw.parse().choices
    rows = gateway.audit(f"label:{tag}=acme")
    assert rows[0]["labels"] == {tag: "acme", "workflow": "nightly"}
    assert gateway.audit(f"label:{tag}=someone-else") == []
    assert [r["request_id"] for r in gateway.audit("label:workflow=nightly")][:1] == [
        rows[0]["request_id"]]


def test_a_nearly_spent_budget_sends_gpt_4o_as_gpt_4o_mini(gateway: Gateway) -> None:
    agent = unique("downgrade")
    gateway.set_policy(f"agent:{agent}", {"clamp_max_tokens": False, "budgets": [
        {"usd": "0.0002", "period": "day", "on_exceeded": {"downgrade_to": "gpt-4o-mini"}}]})
    key = gateway.mint_key(agent)["key"]  # not clamped: a call fits as asked or is refused
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-outlay-downgraded"] == "gpt-4o -> gpt-4o-mini"
    assert raw.parse().model.startswith("gpt-4o-mini")  # the provider answered as that model
    [row] = gateway.audit(f"agent:{agent}")
    assert (row["code"], row["model"]) == ("downgraded", "gpt-4o-mini")
    with pytest.raises(openai.APIStatusError) as refused:  # not even gpt-4o-mini fits
        client.chat.completions.create(model="gpt-4o", max_tokens=4000,
                                       messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
