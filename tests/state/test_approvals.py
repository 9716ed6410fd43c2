"""An approval approves one call: the request the human saw, of its key, at most what it may
cost, past exactly the breaches it was opened for, once, before it expires; on every backend
and across workers."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from outlay.policy.approvals import request_shape
from outlay.policy.decision import Call
from outlay.policy.errors import ApprovalMismatch, ApprovalRequired
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, Outcome, StateStore, Ticket
from outlay.state.keys import hash_secret

from .conftest import OpenStore
from .support import Clock, budget_line

CAP = {"on_breach": "require_approval",
       "budgets": [{"usd": 1, "period": "day", "mode": "hard"}]}
_ids = iter(range(1, 1_000_000))


def pay(secret: str, cents: int, approval_id: str | None = None) -> Ticket:
    """A Stripe payment of `cents` US cents, as the gateway hands it to the store."""
    body = f"amount={cents}&currency=usd".encode()
    return Ticket(f"req_pay{next(_ids):06d}", hash_secret(secret),
                  Call("stripe", cost_micros=cents * 10_000), "vendor.stripe",
                  approval_id=approval_id,
                  shape=request_shape("POST", "/v1/payment_intents", body))


async def key(store: StateStore, agent: str = "bot") -> tuple[str, str]:
    record, secret = await store.create_key(NewKey(agent=agent))
    return record.id, secret


async def settled(store: StateStore, ticket: Ticket) -> None:
    held = await store.reserve(ticket)
    assert await store.settle(Outcome(held.id, 200, cost_micros=held.amount))


async def opened(store: StateStore, ticket: Ticket) -> str:
    with pytest.raises(ApprovalRequired) as refused:
        await store.reserve(ticket)
    return str(refused.value.details["approval_id"])


async def mismatch(store: StateStore, ticket: Ticket) -> ApprovalMismatch:
    with pytest.raises(ApprovalMismatch) as refused:
        await store.reserve(ticket)
    error = refused.value
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["decision"], row["code"], row["status"],
            row["reserved_usd"]) == (ticket.request_id, "refused", "approval_mismatch", 403, "0")
    return error


async def test_an_approval_for_twenty_cents_never_lets_five_thousand_dollars_through(
        store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await key(store)
    await settled(store, pay(secret, 90))
    asked = pay(secret, 20)
    approval_id = await opened(store, asked)
    shown = await store.get_approval(approval_id)
    assert (shown["estimated_usd"], shown["breaches"]) == (
        "0.2", [{"scope": "agent:bot", "code": "budget_exceeded"}])
    assert {k: shown["request"][k] for k in ("method", "path", "vendor", "body_sha256")} == {
        "method": "POST", "path": "/v1/payment_intents", "vendor": "stripe",
        "body_sha256": asked.shape.body_sha256 if asked.shape else None}
    await store.decide_approval(approval_id, True, "twenty cents, once")

    error = await mismatch(store, pay(secret, 500_000, approval_id))
    assert error.details["differs"] == ["body", "amount"]
    line = await budget_line(store, "agent:bot", "day")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.9", "0")  # nothing reserved
    assert (await store.get_approval(approval_id))["state"] == "approved"

    passed = replace(asked, request_id="req_the_approved_one", approval_id=approval_id)
    await settled(store, passed)
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["code"], row["cost_usd"]) == (
        "req_the_approved_one", "approved_overage", "0.2")
    used = await store.get_approval(approval_id)
    assert (used["state"], used["used_by"], used["used_at"]) == (
        "used", "req_the_approved_one", "2024-03-14T12:00:00Z")
    assert (await budget_line(store, "agent:bot", "day"))["spent_usd"] == "1.1"

    again = await mismatch(store, replace(passed, request_id="req_again"))
    assert (again.details["state"], again.details["differs"]) == ("used", ["state"])
    assert (await budget_line(store, "agent:bot", "day"))["spent_usd"] == "1.1"


async def test_an_rpm_approval_does_not_clear_a_budget_breach(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    key_id, secret = await key(store)
    await store.put_policy(f"key:{key_id}", parse_policy(
        {"on_breach": "require_approval", "rpm": 1}))
    await settled(store, pay(secret, 50))
    asked = pay(secret, 20)
    approval_id = await opened(store, asked)
    assert (await store.get_approval(approval_id))["breaches"] == [
        {"scope": f"key:{key_id}", "code": "rate_limit_exceeded"}]
    await store.decide_approval(approval_id, True)
    _, other = await key(store)  # the agent's other key spends what was left
    await settled(store, pay(other, 40))
    error = await mismatch(store, replace(asked, request_id="req_retry",
                                          approval_id=approval_id))
    assert (error.details["differs"], error.details["breaches"]) == (
        ["breaches"], [{"scope": "agent:bot", "code": "budget_exceeded"}])
    # unused: the call it approves still passes once the budget has room again
    assert (await store.get_approval(approval_id))["state"] == "approved"
    assert (await budget_line(store, "agent:bot", "day"))["reserved_usd"] == "0"


async def test_both_breaches_of_one_call_are_approved_at_once(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({**CAP, "rpm": 1}))
    _, secret = await key(store)
    await settled(store, pay(secret, 90))
    asked = pay(secret, 20)
    approval_id = await opened(store, asked)
    assert [b["code"] for b in (await store.get_approval(approval_id))["breaches"]] == [
        "rate_limit_exceeded", "budget_exceeded"]
    await store.decide_approval(approval_id, True)
    await settled(store, replace(asked, request_id="req_both", approval_id=approval_id))
    assert (await store.get_approval(approval_id))["state"] == "used"


async def test_an_approval_expires(open_store: OpenStore, clock: Clock) -> None:
    store = await open_store(clock, approval_ttl_s=60)
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await key(store)
    await settled(store, pay(secret, 90))
    asked = pay(secret, 20)
    approval_id = await opened(store, asked)
    assert (await store.get_approval(approval_id))["expires_at"] == "2024-03-14T12:01:00Z"
    await store.decide_approval(approval_id, True)
    clock.advance(60)
    error = await mismatch(store, replace(asked, request_id="req_late",
                                          approval_id=approval_id))
    assert (error.details["state"], error.details["differs"]) == ("expired", ["state"])
    assert "expired at 2024-03-14T12:01:00Z" in error.message
    assert [a["id"] for a in await store.list_approvals("expired")] == [approval_id]
    assert await store.list_approvals("approved") == []
    # a pending one expires as well: too late to decide
    late = await opened(store, pay(secret, 30))
    clock.advance(61)
    with pytest.raises(ValueError, match="already expired"):
        await store.decide_approval(late, True)


async def test_an_approval_of_another_key_or_none_at_all_is_refused(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await key(store)
    _, thief = await key(store, "thief")
    await settled(store, pay(secret, 90))
    approval_id = await opened(store, pay(secret, 20))
    await store.decide_approval(approval_id, True)
    stolen = await mismatch(store, pay(thief, 20, approval_id))
    assert stolen.details["differs"] == ["key"]
    assert "another key" in stolen.message
    unknown = await mismatch(store, pay(secret, 20, "apr_0000000000000000"))
    assert unknown.details["differs"] == ["approval"]
    assert (await store.get_approval(approval_id))["state"] == "approved"


async def test_a_pending_approval_is_reused_only_by_the_same_call(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await key(store)
    await settled(store, pay(secret, 90))
    asked = pay(secret, 20)
    approval_id = await opened(store, asked)
    assert await opened(store, replace(asked, request_id="req_r",
                                       approval_id=approval_id)) == approval_id
    other = await mismatch(store, pay(secret, 25, approval_id))
    assert (other.details["state"], other.details["differs"]) == (
        "pending", ["body", "amount"])
    assert len(await store.list_approvals()) == 1


async def test_two_workers_racing_on_one_approval_admit_exactly_one_call(
        open_store: OpenStore, clock: Clock) -> None:
    first = await open_store(clock)
    second = await open_store(clock)
    await first.put_policy("agent:bot", parse_policy(CAP))
    _, secret = await key(first)
    await settled(first, pay(secret, 90))
    asked = pay(secret, 20)
    approval_id = await opened(first, asked)
    await second.decide_approval(approval_id, True)
    racers = [replace(asked, request_id=f"req_race{i}", approval_id=approval_id)
              for i in range(8)]
    results = await asyncio.gather(
        *(store.reserve(t) for t, store in zip(racers, [first, second] * 4, strict=True)),
        return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 1, results
    assert all(isinstance(r, ApprovalMismatch) for r in results if r not in admitted)
    used = await first.get_approval(approval_id)
    assert (used["state"], used["used_by"]) == ("used", admitted[0].id)  # type: ignore[union-attr]
    line = await budget_line(second, "agent:bot", "day")
    assert line["reserved_usd"] == "0.2"
