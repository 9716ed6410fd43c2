"""402 only when spend itself leaves no room: 24 agents of one group racing on a $0.03 daily
cap through `outlay serve --workers 2`, each firing six calls at once, spend the cap (at
least 90 % of it, never a micro-dollar past it), and every refusal's audit row shows that the
settled spend left no room for the call. Before, the open reservations of other calls
refused most calls: about a quarter of the cap was spent."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from .harness import Launch, micros, unique

pytestmark = pytest.mark.e2e

AGENTS = 24
CAP_USD = "0.03"
CALLS_EACH = 6  # 144 calls: the cap has room for 125
# A call reserves 96 output tokens at $10 per million (no input price): $0.00096, 3.2 % of
# the cap; the simulated provider writes 24: it costs $0.00024, a quarter of its hold, as an
# LLM call asking for more than it uses does. 24 calls in flight then hold three quarters of
# the cap while little of it is spent.
MODEL = "e2e-held"
PRICES = {MODEL: {"provider": "openai", "input": 0, "output": 10, "max_output_tokens": 96,
                  "context_window": 128_000}}
RESERVED, COST = 960, 240  # micro-USD
CHAT = {"model": MODEL, "max_tokens": 96, "messages": [{"role": "user", "content": "hi"}]}


async def _agent(url: str, key: str) -> list[int]:
    """One agent: CALLS_EACH calls at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=CALLS_EACH)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        answers = await asyncio.gather(*(http.post("/v1/chat/completions", json=CHAT)
                                         for _ in range(CALLS_EACH)))
    return [a.status_code for a in answers]


async def _race(url: str, keys: list[str]) -> list[list[int]]:
    return await asyncio.gather(*(_agent(url, key) for key in keys))


def test_agents_racing_on_a_group_cap_spend_it_and_never_pass_it(launch: Launch) -> None:
    gateway = launch({"simulated": {"latency_ms": 30}, "prices": PRICES}, workers=2,
                     name="holds")
    group = unique("racers")
    scope = f"group:{group}"
    gateway.set_policy(scope, {"budgets": [{"usd": CAP_USD, "period": "day", "mode": "hard"}]})
    keys = []
    for _ in range(AGENTS):
        agent = unique("racer")
        answer = gateway.admin.post("/admin/v1/agents", json={"name": agent, "group": group})
        assert answer.status_code == 201, answer.text
        keys.append(gateway.mint_key(agent)["key"])

    runs = asyncio.run(_race(gateway.url, keys))

    statuses = Counter(s for run in runs for s in run)
    assert set(statuses) == {200, 402}, statuses
    cap = micros(CAP_USD)
    budget = gateway.budget(scope, "day")
    spent = micros(budget["spent_usd"])
    assert micros(budget["reserved_usd"]) == 0
    assert spent <= cap, f"spent {spent} micro-USD over a {cap} cap"
    assert spent >= 0.9 * cap, f"only {spent} micro-USD of a {cap} cap spent"
    assert spent == statuses[200] * COST

    refusals = [e for e in gateway.audit(scope) if e["decision"] == "refused"]
    assert len(refusals) == statuses[402] == AGENTS * CALLS_EACH - statuses[200]
    for row in refusals:
        assert (row["code"], row["refused_by"], row["cap_usd"]) == (
            "budget_exceeded", scope, CAP_USD)
        # the settled spend alone left no room for the call
        assert micros(row["estimated_usd"]) == RESERVED
        assert micros(row["spent_usd"]) + RESERVED > cap, row
