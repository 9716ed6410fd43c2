"""Helpers shared by the state suite: a fake clock, tickets, and sums read from the ledger."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from outlay.policy.decision import Call
from outlay.policy.money import usd_to_micros
from outlay.state.base import Reaped, Reservation, StateStore, Ticket
from outlay.state.keys import hash_secret

START = datetime(2024, 3, 14, 12, 0, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


@dataclass
class Clock:
    """A clock the test moves by hand; a store calls it for the time in ms."""

    now: int = ms(START)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1000)

    def set(self, moment: datetime) -> None:
        self.now = ms(moment)


_request_ids = itertools.count(1)


def ticket(
    secret: str | None,
    cost: int | None = 1_000,
    *,
    vendor: str = "openai",
    model: str | None = "gpt-4o-mini",
    tokens: int = 0,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> Ticket:
    """An agent request for `cost` micro-USD, presented with `secret` (None: no key)."""
    return Ticket(
        request_id=request_id or f"req_{next(_request_ids):06d}",
        key_hash=None if secret is None else hash_secret(secret),
        call=Call(vendor, model, model, cost_micros=cost, tokens=tokens),
        route="/v1/chat/completions" if model else f"/vendors/{vendor}/v1/x",
        idempotency_key=idempotency_key,
    )


async def ledger_cost(store: StateStore, scope: str | None = None) -> int:
    """The sum of `cost` over every ledger row (of a scope), in micro-USD."""
    return sum(usd_to_micros(row["cost_usd"]) for row in await store.audit(scope, 1_000_000))


async def budget_line(store: StateStore, scope: str, period: str) -> dict[str, Any]:
    """The usage line of a scope's budget for one period."""
    lines: list[dict[str, Any]] = (await store.usage(scope))["budgets"]
    (line,) = [b for b in lines if b["period"] == period]
    return line


def charged(reaped: list[Reaped]) -> int:
    """How many reservations a reap charged in full, over every worker."""
    return sum(line.charged for line in reaped)


async def eventually(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Wait until `condition()` holds (checked every 5 ms); fail after `timeout_s`."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"still not so after {timeout_s} s")


async def sent(store: StateStore, reservation: Reservation) -> Reservation:
    """A reservation whose call was sent (the worker marked it forwarded): a reaper that
    finds its worker dead charges it in full, as it may have been served."""
    assert await store.forwarding(reservation.id)
    return reservation
