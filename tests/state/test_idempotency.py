"""Vendor retries under one idempotency key are charged once: a replay holds and is charged
nothing, whatever its answer reports."""

from __future__ import annotations

import pytest

from outlay.policy.errors import BudgetExceeded, NotAllowed
from outlay.policy.model import parse_policy
from outlay.state.base import KeyRecord, NewKey, Outcome, StateStore

from .support import budget_line, ledger_cost, ticket


async def stripe_key(store: StateStore, usd: float = 0.01) -> tuple[KeyRecord, str]:
    await store.put_policy("global", parse_policy({"budgets": [{"usd": usd}]}))
    return await store.create_key(NewKey(agent="payer"))


async def test_settling_above_the_reservation_charges_the_bill(store: StateStore) -> None:
    _, secret = await stripe_key(store)
    held = await store.reserve(ticket(secret, 6_000))
    assert await store.settle(Outcome(held.id, 200, cost_micros=9_999))
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.009999", "0")
    assert await ledger_cost(store) == 9_999


async def test_a_retry_under_the_same_key_is_a_free_replay(store: StateStore) -> None:
    record, secret = await stripe_key(store)
    first = await store.reserve(ticket(secret, 6_000, vendor="stripe", model=None,
                                       idempotency_key="idem-1", request_id="req_first"))
    retry = await store.reserve(ticket(secret, 6_000, vendor="stripe", model=None,
                                       idempotency_key="idem-1", request_id="req_retry"))
    assert (retry.amount, retry.key.id) == (0, record.id)
    line = await budget_line(store, "global", "month")
    assert line["reserved_usd"] == "0.006"  # held once
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["decision"], row["code"], row["reserved_usd"]) == (
        "req_retry", "allowed", "idempotent_replay", "0")
    assert await store.settle(Outcome(first.id, 200, cost_micros=6_000))
    assert await store.settle(Outcome(retry.id, 200, cost_micros=6_000))  # capped at 0 held
    assert await ledger_cost(store) == 6_000


async def test_a_replay_still_faces_the_allow_lists(store: StateStore) -> None:
    record, secret = await stripe_key(store, usd=1)
    await store.reserve(ticket(secret, 1_000, vendor="stripe", model=None,
                               idempotency_key="idem-1"))
    await store.put_policy(f"key:{record.id}", parse_policy({"vendors": ["openai"]}))
    with pytest.raises(NotAllowed):
        await store.reserve(ticket(secret, 1_000, vendor="stripe", model=None,
                                   idempotency_key="idem-1"))


async def test_idempotency_keys_are_per_key_and_vendor(store: StateStore) -> None:
    _, secret = await stripe_key(store, usd=1)
    _, other = await store.create_key(NewKey(agent="payer"))
    await store.reserve(ticket(secret, 1_000, vendor="stripe", model=None,
                               idempotency_key="idem-1"))
    for reserved in (
        await store.reserve(ticket(other, 1_000, vendor="stripe", model=None,
                                   idempotency_key="idem-1")),
        await store.reserve(ticket(secret, 1_000, vendor="twilio", model=None,
                                   idempotency_key="idem-1")),
        await store.reserve(ticket(secret, 1_000, vendor="stripe", model=None,
                                   idempotency_key="idem-2")),
        await store.reserve(ticket(secret, 1_000, vendor="stripe", model=None)),
    ):
        assert reserved.amount == 1_000
    assert (await budget_line(store, "global", "month"))["reserved_usd"] == "0.005"


async def test_the_retry_of_a_refused_or_voided_call_is_decided_again(
    store: StateStore,
) -> None:
    _, secret = await stripe_key(store)
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 20_000, vendor="stripe", model=None,
                                   idempotency_key="too-big"))
    with pytest.raises(BudgetExceeded):  # not waved through as a replay
        await store.reserve(ticket(secret, 20_000, vendor="stripe", model=None,
                                   idempotency_key="too-big"))
    voided = await store.reserve(ticket(secret, 6_000, vendor="stripe", model=None,
                                        idempotency_key="declined"))
    assert await store.settle(Outcome(voided.id, 402, settled="void"))
    again = await store.reserve(ticket(secret, 6_000, vendor="stripe", model=None,
                                       idempotency_key="declined"))
    assert again.amount == 6_000
    assert (await budget_line(store, "global", "month"))["reserved_usd"] == "0.006"
