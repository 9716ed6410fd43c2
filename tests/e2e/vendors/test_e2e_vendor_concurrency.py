"""Sixty Stripe payments at once from three agents of one group, across two gateway workers: the
group's hard cap is never exceeded, Stripe saw exactly the payments the gateway admitted, and
the ledger agrees with the counters to the micro-dollar."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from ..harness import Gateway, micros, unique
from .conftest import MockVendors

pytestmark = pytest.mark.e2e

INTENTS = "/v1/payment_intents"
CALLS = 60
CAP_USD = 500
EUR = Decimal("1.08")  # the shipped rate (vendors/fx.yaml)


def payment(index: int) -> tuple[int, str]:
    """Amounts from $7.13 to about $49, some in EUR, so the cap is not a multiple of them."""
    amount = 713 + (index * 397) % 4200
    return amount, ("eur" if index % 4 == 0 else "usd")


def usd_micros(amount: int, currency: str) -> int:
    rate = EUR if currency == "eur" else Decimal(1)
    exact = Decimal(amount) * rate * 10_000  # cents -> micro-USD
    assert exact == exact.to_integral_value()
    return int(exact)


async def _pay_all(url: str, keys: list[str]) -> list[tuple[int, str, httpx.Response]]:
    limits = httpx.Limits(max_connections=CALLS, max_keepalive_connections=CALLS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def pay(index: int) -> tuple[int, str, httpx.Response]:
            amount, currency = payment(index)
            idem = f"conc-{uuid.uuid4()}"
            answer = await http.post(
                f"/vendors/stripe{INTENTS}",
                data={"amount": str(amount), "currency": currency},
                headers={"Authorization": f"Bearer {keys[index % len(keys)]}",
                         "Idempotency-Key": idem})
            return index, idem, answer

        return await asyncio.gather(*(pay(i) for i in range(CALLS)))


def test_a_group_cap_holds_exactly_under_60_concurrent_payments(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    assert vendor_gateway.workers == 2
    group = unique("fleet")
    agents = [unique(f"fleet-agent-{n}") for n in range(3)]
    for agent in agents:
        answer = vendor_gateway.admin.post("/admin/v1/agents", json={"name": agent,
                                                                      "group": group})
        assert answer.status_code == 201, answer.text
    scope = f"group:{group}"
    vendor_gateway.set_policy(scope, {"budgets": [
        {"usd": CAP_USD, "period": "total", "mode": "hard"}]})
    keys = [vendor_gateway.mint_key(agent)["key"] for agent in agents]
    mark = mock_vendors.mark()

    with mock_vendors.slow(0.2):
        results = asyncio.run(_pay_all(vendor_gateway.url, keys))

    statuses = Counter(answer.status_code for _, _, answer in results)
    assert set(statuses) <= {200, 400}, statuses  # Stripe's budget refusal is a 400
    admitted = [(i, idem) for i, idem, answer in results if answer.status_code == 200]
    refused = [i for i, _, answer in results if answer.status_code == 400]
    assert len(admitted) >= 10
    assert len(refused) >= 10
    for _, _, answer in results:
        if answer.status_code == 400:
            assert answer.json()["error"]["code"] == "budget_exceeded"

    # Stripe saw exactly the payments the gateway let through, each once
    created = mock_vendors.creations(mark, "stripe", INTENTS)
    assert len(created) == len(admitted)
    assert Counter(c.headers["idempotency-key"] for c in created) == Counter(
        idem for _, idem in admitted)

    cap = CAP_USD * 1_000_000
    budget = vendor_gateway.budget(scope, "total")
    spent = micros(budget["spent_usd"])
    assert micros(budget["reserved_usd"]) == 0
    assert Decimal(budget["spent_usd"]) <= Decimal(budget["cap_usd"]) == Decimal(CAP_USD)
    assert spent == sum(usd_micros(*payment(i)) for i, _ in admitted)
    assert spent <= cap
    # Reservations were exact and none was voided, so what was held only grew: a payment
    # refused at any moment would not fit in the final remainder either.
    assert min(usd_micros(*payment(i)) for i in refused) > cap - spent

    ledger = vendor_gateway.audit(scope, limit=1000)
    charged = [e for e in ledger if e["settlement"] == "settled"]
    assert len(charged) == len(admitted)
    assert sum(micros(e["cost_usd"]) for e in ledger if e["cost_usd"] is not None) == spent
    assert Counter(e["agent"] for e in ledger) == Counter(
        agents[i % len(agents)] for i in range(CALLS))
    per_agent = sum(micros(vendor_gateway.usage(f"agent:{a}")["spend_by_vendor"].get(
        "stripe", 0)) for a in agents)
    assert per_agent == spent
