"""Vendor retries under one idempotency key on one vendor account are charged once, whichever
key sends them: a replay holds and is charged nothing, whatever its answer reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from outlay.policy.errors import BudgetExceeded, NotAllowed
from outlay.policy.model import parse_policy
from outlay.state.base import KeyRecord, NewKey, Outcome, StateStore, Ticket

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


def on(account: str, t: Ticket) -> Ticket:
    """`t` sent to the vendor account `account`."""
    return replace(t, idempotency_account=account)


async def test_idempotency_keys_are_per_vendor_account_whichever_key_sends_them(
        store: StateStore) -> None:
    _, secret = await stripe_key(store, usd=1)
    _, other = await store.create_key(NewKey(agent="payer"))
    first = await store.reserve(on("acct-1", ticket(secret, 1_000, vendor="stripe", model=None,
                                                   idempotency_key="idem-1")))
    replay = await store.reserve(on("acct-1", ticket(other, 1_000, vendor="stripe", model=None,
                                                    idempotency_key="idem-1")))
    assert (replay.amount, replay.replay_of) == (0, first.id)
    for reserved in (
        await store.reserve(on("acct-2", ticket(other, 1_000, vendor="stripe", model=None,
                                                idempotency_key="idem-1"))),
        await store.reserve(on("acct-1", ticket(secret, 1_000, vendor="twilio", model=None,
                                                idempotency_key="idem-1"))),
        await store.reserve(on("acct-1", ticket(secret, 1_000, vendor="stripe", model=None,
                                                idempotency_key="idem-2"))),
        await store.reserve(on("acct-1", ticket(secret, 1_000, vendor="stripe", model=None))),
    ):
        assert (reserved.amount, reserved.replay_of) == (1_000, None)
    assert (await budget_line(store, "global", "month"))["reserved_usd"] == "0.005"


async def test_a_payment_retried_from_another_key_is_charged_once(store: StateStore) -> None:
    """Two run keys of one agent send the same $30 payment with one Idempotency-Key: the
    vendor moves $30 once, and Outlay charges $30 once, to the first call's scopes."""
    await store.put_policy("agent:payer", parse_policy({"budgets": [{"usd": 100}]}))
    first_key, first_secret = await store.create_key(NewKey(agent="payer"))
    second_key, second_secret = await store.create_key(NewKey(agent="payer"))
    payment = {"vendor": "stripe", "model": None, "idempotency_key": "order-42"}
    first = await store.reserve(on("acct", ticket(first_secret, 30_000_000, **payment,
                                                  request_id="req_first_run")))
    assert await store.settle(Outcome(first.id, 200, cost_micros=30_000_000))
    again = await store.reserve(on("acct", ticket(second_secret, 30_000_000, **payment,
                                                  request_id="req_second_run")))
    assert await store.settle(Outcome(again.id, 200, cost_micros=30_000_000))
    assert (again.amount, again.replay_of) == (0, "req_first_run")
    assert (await budget_line(store, "agent:payer", "month"))["spent_usd"] == "30"
    assert await ledger_cost(store, f"key:{first_key.id}") == 30_000_000
    assert await ledger_cost(store, f"key:{second_key.id}") == 0
    row = (await store.audit(f"key:{second_key.id}", 1))[0]
    assert (row["code"], row["replay_of"], row["cost_usd"]) == (
        "idempotent_replay", "req_first_run", "0")
    assert (await store.audit(f"key:{first_key.id}", 1))[0]["replay_of"] is None
    # the agent's $100 cap still has its $70
    fifty = await store.reserve(on("acct", ticket(second_secret, 50_000_000, vendor="stripe",
                                                  model=None, idempotency_key="order-43")))
    assert fifty.amount == 50_000_000


async def test_a_voided_first_call_frees_its_key_for_another_keys_retry(
        store: StateStore) -> None:
    _, secret = await stripe_key(store, usd=1)
    _, other = await store.create_key(NewKey(agent="payer"))
    declined = await store.reserve(on("acct", ticket(secret, 6_000, vendor="stripe",
                                                     model=None, idempotency_key="k")))
    assert await store.settle(Outcome(declined.id, 402, settled="void"))
    retry = await store.reserve(on("acct", ticket(other, 6_000, vendor="stripe", model=None,
                                                  idempotency_key="k")))
    assert (retry.amount, retry.replay_of) == (6_000, None)


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
