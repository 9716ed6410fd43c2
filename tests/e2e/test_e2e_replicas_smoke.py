"""Two replicas on one Redis state and one PostgreSQL database: each answers admin and agent
calls, a key minted through one is good at the other, and both see the spend of either."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .harness import micros, unique
from .replicas import Replicas

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_two_replicas_share_keys_policies_and_spend(
        tmp_path: Path, redis_url: str, postgres_dsn: str) -> None:
    with Replicas(tmp_path, 2, state_url=redis_url, database=postgres_dsn,
                  config={"simulated": {"latency_ms": 0}}) as replicas:
        agent = unique("replica-agent")
        scope = f"agent:{agent}"
        key = replicas[0].mint_key(agent)["key"]
        replicas[1].set_policy(scope, {"budgets": [{"usd": 1, "period": "day"}]})
        costs = []
        for replica in replicas:
            answer = httpx.post(f"{replica.url}/v1/chat/completions", json=CHAT, timeout=15,
                                headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, f"{replica.name}: {answer.text}"
            costs.append(micros(answer.headers["x-outlay-cost-usd"]))
        for replica in replicas:
            budget = replica.budget(scope, "day")
            assert micros(budget["spent_usd"]) == sum(costs), replica.name
            assert micros(budget["reserved_usd"]) == 0, replica.name
