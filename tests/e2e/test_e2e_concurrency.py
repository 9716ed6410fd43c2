"""Many calls at once across three worker processes sharing one SQLite file: a hard budget is
never exceeded by one micro-dollar, a rate limit admits exactly its limit, and the ledger
agrees with the counters to the micro-dollar."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from .harness import (
    EXACT_MODEL,
    EXACT_PRICES,
    EXACT_TOKENS,
    POOL_CONFIG,
    Gateway,
    Launch,
    micros,
    unique,
)

pytestmark = pytest.mark.e2e


async def _fire(url: str, key: str, body: dict, count: int) -> list[httpx.Response]:
    """`count` identical calls, all started at once, each on its own connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers,
                                 timeout=60) as http:
        return await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body) for _ in range(count)))


def fire(gateway: Gateway, key: str, body: dict, count: int) -> list[httpx.Response]:
    return asyncio.run(_fire(gateway.url, key, body, count))


def chat(model: str, max_tokens: int) -> dict:
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}]}


def test_hard_budget_holds_exactly_under_200_concurrent_calls(pool: Gateway) -> None:
    agent = unique("budget-race")
    scope = f"agent:{agent}"
    cap = 10_000  # $0.01
    pool.set_policy(scope, {"budgets": [{"usd": "0.01", "period": "day", "mode": "hard"}]})
    key = pool.mint_key(agent)["key"]
    per_call = EXACT_TOKENS * EXACT_PRICES[EXACT_MODEL]["output"]  # micro-USD, reserved = cost

    answers = fire(pool, key, chat(EXACT_MODEL, EXACT_TOKENS), 200)

    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 402}, {a.status_code: a.text for a in answers}
    ok = [a for a in answers if a.status_code == 200]
    assert ok, statuses
    assert statuses[402], statuses
    for refused in (a for a in answers if a.status_code == 402):
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert refused.headers["x-should-retry"] == "false"

    budget = pool.budget(scope)
    spent = micros(budget["spent_usd"])
    assert micros(budget["reserved_usd"]) == 0
    assert spent <= cap, f"spent {spent} micro-USD over a {cap} cap"
    # every admitted call costs exactly what it reserved, so the budget is used up to the
    # last whole call: no over-admission, and no reservation leaked or double-counted
    assert spent == len(ok) * per_call
    assert cap - spent < per_call
    assert sum(micros(a.headers["x-outlay-cost-usd"]) for a in ok) == spent

    entries = pool.audit(scope)
    assert len(entries) == 200
    assert sum(micros(e["cost_usd"]) for e in entries) == spent
    allowed = [e for e in entries if e["decision"] == "allowed"]
    assert len(allowed) == len(ok)
    assert {e["request_id"] for e in allowed} == {a.headers["x-outlay-request-id"] for a in ok}
    assert {(e["status"], e["settlement"]) for e in allowed} == {(200, "settled")}
    refused_rows = [e for e in entries if e["decision"] == "refused"]
    assert {(e["status"], e["code"], e["refused_by"]) for e in refused_rows} == {
        (402, "budget_exceeded", scope)}
    assert all(micros(e["cost_usd"]) == 0 for e in refused_rows)


def test_budget_with_a_cost_below_the_reservation(pool: Gateway) -> None:
    """Reservations above the actual cost: refusals happen while calls are held, and the
    counters still settle to the sum of actual costs with nothing left reserved."""
    agent = unique("budget-loose")
    scope = f"agent:{agent}"
    pool.set_policy(scope, {"budgets": [{"usd": "0.01", "period": "day", "mode": "hard"}]})
    key = pool.mint_key(agent)["key"]

    answers = fire(pool, key, chat("gpt-4o", 100), 120)

    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {200, 402}, statuses
    budget = pool.budget(scope)
    spent = micros(budget["spent_usd"])
    assert spent <= 10_000
    assert micros(budget["reserved_usd"]) == 0
    entries = pool.audit(scope)
    assert sum(micros(e["cost_usd"]) for e in entries) == spent
    allowed = [e for e in entries if e["decision"] == "allowed"]
    assert len(allowed) == statuses[200]
    assert all(micros(e["cost_usd"]) < micros(e["reserved_usd"]) for e in allowed)


def test_rate_limit_is_exact_across_workers(pool: Gateway) -> None:
    minted = pool.mint_key(unique("rpm-race"), policy={"rpm": 30})

    answers = fire(pool, minted["key"], chat("gpt-4o-mini", 5), 60)

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 30, 429: 30}, statuses
    for limited in (a for a in answers if a.status_code == 429):
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert limited.headers["retry-after"].isdigit()
    (window,) = pool.usage(f"key:{minted['id']}")["windows"]
    assert (window["name"], window["limit"], window["used"]) == ("rpm", 30, 30)
    entries = pool.audit(f"key:{minted['id']}")
    assert Counter(e["decision"] for e in entries) == {"allowed": 30, "refused": 30}


async def _fire_many(url: str, calls: list[tuple[str, dict]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=len(calls))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        return await asyncio.gather(*(
            http.post("/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"})
            for key, body in calls))


def test_every_scope_of_a_call_is_charged_at_once(launch: Launch) -> None:
    """Two agents of one group race for the group's hard cap, under a soft global budget
    they blow through: the group cap holds, and key, agent, group, vendor and global
    counters all agree with each other and with the ledger."""
    gw = launch(POOL_CONFIG, workers=2, name="scopes")
    group = unique("fleet")
    agents = [unique("fleet-a"), unique("fleet-b")]
    keys = []
    for agent in agents:
        created = gw.admin.post("/admin/v1/agents", json={"name": agent, "group": group})
        assert created.status_code == 201, created.text
        keys.append(gw.mint_key(agent))
    roomy = {"budgets": [{"usd": 100, "period": "day", "mode": "hard"}]}
    for scope in ("vendor:openai", *(f"agent:{a}" for a in agents),
                  *(f"key:{k['id']}" for k in keys)):
        gw.set_policy(scope, roomy)
    gw.set_policy(f"group:{group}", {"budgets": [{"usd": "0.005", "period": "day"}]})
    gw.set_policy("global", {"budgets": [{"usd": "0.001", "period": "day", "mode": "soft"}]})
    per_call = EXACT_TOKENS * EXACT_PRICES[EXACT_MODEL]["output"]

    body = chat(EXACT_MODEL, EXACT_TOKENS)
    answers = asyncio.run(_fire_many(gw.url, [(k["key"], body) for k in keys] * 40))

    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {200, 402}, statuses
    assert {a.json()["error"]["scope"] for a in answers if a.status_code == 402} == {
        f"group:{group}"}
    spent = {scope: micros(gw.budget(scope)["spent_usd"]) for scope in (
        f"group:{group}", "vendor:openai", "global",
        *(f"agent:{a}" for a in agents), *(f"key:{k['id']}" for k in keys))}
    total = statuses[200] * per_call
    assert spent[f"group:{group}"] == total
    assert total == 5_000 - 5_000 % per_call  # the cap, to the last whole call
    assert spent["vendor:openai"] == spent["global"] == total  # soft: over its cap, allowed
    assert sum(spent[f"agent:{a}"] for a in agents) == total
    assert [spent[f"key:{k['id']}"] for k in keys] == [spent[f"agent:{a}"] for a in agents]
    assert sum(micros(e["cost_usd"]) for e in gw.audit(f"group:{group}")) == total
