"""A request whose values a store cannot take (a lone surrogate, which is how a header byte
that is not UTF-8 reaches the store, or a NUL, which PostgreSQL's text refuses) hurts no one
else: the honest calls decided and settled beside it, in the same batch, all land, and the
ledger adds up. The bad request is refused alone, or recorded as it came."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from outlay.policy.errors import ApprovalMismatch
from outlay.policy.model import parse_policy
from outlay.policy.money import usd_to_micros
from outlay.state.base import NewKey, Outcome, Reservation, StateError, StateStore, Ticket

from .support import budget_line, ticket

HONEST = 12
SURROGATE = "\udcff"  # aiohttp's reading of the byte 0xff in a header
NUL = "\x00"


def spoiled(secret: str, field: str, bad: str) -> Ticket:
    """A call of `secret` with `bad` in one of the values a request brings."""
    call = ticket(secret, 1_000)
    if field == "approval id":
        return replace(call, approval_id=f"apr_{bad}")
    if field == "idempotency key":
        return replace(ticket(secret, 1_000, vendor="stripe", model=None),
                       idempotency_key=f"idem-{bad}")
    if field == "model":
        return replace(call, call=replace(call.call, model=f"gpt{bad}",
                                          model_resolved=f"gpt{bad}"))
    assert field == "route"
    return replace(ticket(secret, 1_000, vendor="stripe", model=None),
                   route=f"/vendors/stripe/v1/charges/{bad}")


FIELDS = ["approval id", "idempotency key", "model", "route"]
BAD = [pytest.param(field, bad, id=f"{field}-{name}")
       for field in FIELDS for name, bad in (("surrogate", SURROGATE), ("NUL", NUL))]


async def bot(store: StateStore) -> str:
    await store.put_policy("agent:bot", parse_policy({"budgets": [{"usd": 10}]}))
    _, secret = await store.create_key(NewKey(agent="bot"))
    return secret


async def ledger_adds_up(store: StateStore, honest: list[str]) -> list[dict[str, Any]]:
    """Every honest call settled in the ledger; the spend is the sum of the rows, and
    nothing is held."""
    rows = await store.audit(None, 10_000)
    by_id = {r["request_id"]: r for r in rows}
    for request_id in honest:
        assert by_id[request_id]["settlement"] == "settled", by_id.get(request_id)
    line = await budget_line(store, "agent:bot", "month")
    assert usd_to_micros(line["spent_usd"]) == sum(usd_to_micros(r["cost_usd"]) for r in rows)
    assert line["reserved_usd"] == "0"
    return rows


@pytest.mark.parametrize(("field", "bad"), BAD)
async def test_a_bad_value_fails_its_call_alone_and_every_settlement_lands(
    store: StateStore, field: str, bad: str
) -> None:
    secret = await bot(store)
    first = [await store.reserve(ticket(secret, 2_000)) for _ in range(HONEST)]
    # one batch: honest decisions, the settlements of the calls before (awaited, and queued
    # as the gateway does once an answer is sent), and the bad call in the middle
    for held in first[HONEST // 2:]:
        assert store.queue_settlement(Outcome(held.id, 200, cost_micros=1_500))
    results = await asyncio.gather(
        *(store.reserve(ticket(secret, 2_000)) for _ in range(HONEST // 2)),
        store.reserve(spoiled(secret, field, bad)),
        *(store.settle(Outcome(held.id, 200, cost_micros=1_000))
          for held in first[:HONEST // 2]),
        *(store.reserve(ticket(secret, 2_000)) for _ in range(HONEST // 2)),
        return_exceptions=True)
    reserved = results[:HONEST // 2] + results[-(HONEST // 2):]
    assert all(isinstance(r, Reservation) for r in reserved), reserved
    assert results[HONEST // 2 + 1:-(HONEST // 2)] == [True] * (HONEST // 2)
    spoilt = results[HONEST // 2]
    # refused alone, or (a value this store can keep) admitted like any call, or for an
    # approval id, refused as any approval id that names no approval
    kept = StateError | Reservation | (ApprovalMismatch if field == "approval id" else None)
    assert isinstance(spoilt, kept), spoilt
    second: list[Reservation] = [r for r in reserved if isinstance(r, Reservation)]
    if isinstance(spoilt, Reservation):
        second.append(spoilt)
    for held in second:
        assert await store.settle(Outcome(held.id, 200, cost_micros=700))
    rows = await ledger_adds_up(store, [h.id for h in first + second])
    assert sum(usd_to_micros(r["cost_usd"]) for r in rows) == (
        HONEST // 2 * (1_000 + 1_500) + len(second) * 700)
    assert store.settlement_retries().waiting == 0


@pytest.mark.parametrize(("field", "bad"), BAD)
async def test_a_bad_refusal_is_recorded_or_refused_alone(
    store: StateStore, field: str, bad: str
) -> None:
    secret = await bot(store)
    honest = [replace(ticket(secret, 1_000), request_id=f"req_honest_{n}") for n in range(6)]
    results = await asyncio.gather(
        *(store.record_refusal(t, 400, "invalid_request") for t in honest[:3]),
        store.record_refusal(spoiled(secret, field, bad), 400, "invalid_request"),
        *(store.record_refusal(t, 400, "invalid_request") for t in honest[3:]),
        return_exceptions=True)
    assert results[:3] + results[4:] == [None] * 6
    assert results[3] is None or isinstance(results[3], StateError)
    recorded = {r["request_id"]: r for r in await store.audit(None, 100)}
    for t in honest:
        assert recorded[t.request_id]["decision"] == "invalid"
