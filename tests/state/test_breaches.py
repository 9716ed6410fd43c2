"""Breach actions (block, alert, require_approval), approvals, and the events they raise,
coalesced so a runaway loop does not become a webhook storm."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest

from outlay.policy.errors import ApprovalMismatch, ApprovalRequired, BudgetExceeded, RateLimited
from outlay.policy.model import parse_policy
from outlay.state.base import KeyRecord, NewKey, Outcome, StateStore, Ticket

from .support import Clock, budget_line, ticket


@pytest.fixture(autouse=True)
async def listener(store: StateStore) -> None:
    """An endpoint that takes every event: the outbox keeps only events someone wants."""
    await store.add_webhook("http://127.0.0.1:9/hook", ["*"])  # type: ignore[attr-defined]


async def events(store: StateStore) -> list[dict[str, object]]:
    """Every event put in the webhook outbox, oldest first (claimed with a lease of zero, so
    they stay due)."""
    await store.audit(None, 1)  # reading the ledger brings every decision's writes in
    jobs = await store.claim_deliveries(1_000, 0)  # type: ignore[attr-defined]
    return [json.loads(job.body) for job in jobs]


async def types(store: StateStore) -> Counter[str]:
    return Counter(str(e["type"]) for e in await events(store))


async def agent_key(store: StateStore, policy: dict[str, object]) -> tuple[KeyRecord, str]:
    await store.put_policy("agent:bot", parse_policy(policy))
    return await store.create_key(NewKey(agent="bot"))


def approved(secret: str, cost: int, approval_id: str) -> Ticket:
    """A new request carrying X-Outlay-Approval."""
    return replace(ticket(secret, cost), approval_id=approval_id)


async def spend(store: StateStore, secret: str, cost: int) -> None:
    held = await store.reserve(ticket(secret, cost))
    assert await store.settle(Outcome(held.id, 200, cost_micros=cost))


async def test_a_burst_crossing_warn_at_and_the_cap_raises_each_event_once(
        store: StateStore) -> None:
    _, secret = await agent_key(store, {"budgets": [
        {"usd": "0.01", "period": "day", "mode": "hard", "warn_at": 0.8}]})
    refused = 0
    for _ in range(30):  # 30 calls of $0.001 against $0.01: crosses 80 %, then hits the cap
        try:
            await spend(store, secret, 1_000)
        except BudgetExceeded:
            refused += 1
    assert refused == 20
    assert await types(store) == {"budget.warning": 1, "budget.exceeded": 1}
    warning, exceeded = await events(store)
    assert warning["type"] == "budget.warning"
    data = warning["data"]
    assert isinstance(data, dict)
    assert (data["scope"], data["period"], data["spent_usd"], data["cap_usd"],
            data["percent_used"]) == ("agent:bot", "day", "0.008", "0.01", 80.0)
    assert str(warning["id"]).startswith("evt_")
    assert exceeded["type"] == "budget.exceeded"


async def test_a_soft_budget_lets_calls_through_and_announces_the_crossing(
        store: StateStore) -> None:
    _, secret = await agent_key(store, {"budgets": [
        {"usd": "0.002", "period": "day", "mode": "soft", "warn_at": 0.5}]})
    for _ in range(5):
        await spend(store, secret, 1_000)
    assert (await budget_line(store, "agent:bot", "day"))["spent_usd"] == "0.005"
    assert await types(store) == {"budget.warning": 1, "budget.exceeded": 1}


async def test_the_next_period_warns_again(store: StateStore, clock: Clock) -> None:
    _, secret = await agent_key(store, {"budgets": [
        {"usd": "0.001", "period": "day", "mode": "soft", "warn_at": 0.5}]})
    await spend(store, secret, 600)
    clock.advance(86_400)
    await spend(store, secret, 600)
    assert await types(store) == {"budget.warning": 2}


async def test_rate_limited_is_announced_once_per_key_per_minute(
        store: StateStore, clock: Clock) -> None:
    record, secret = await agent_key(store, {"rpm": 1})
    await store.reserve(ticket(secret, 0))
    for _ in range(10):
        with pytest.raises(RateLimited):
            await store.reserve(ticket(secret, 0))
    assert await types(store) == {"agent.rate_limited": 1}
    clock.advance(61)
    await store.reserve(ticket(secret, 0))
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret, 0))
    assert await types(store) == {"agent.rate_limited": 2}
    data = (await events(store))[0]["data"]
    assert isinstance(data, dict)
    assert (data["key_id"], data["agent_id"], data["limit"]) == (record.id, "bot", 1)


async def test_on_breach_alert_lets_the_call_through_and_marks_the_overage(
        store: StateStore) -> None:
    _, secret = await agent_key(store, {
        "rpm": 1, "on_breach": "alert",
        "budgets": [{"usd": "0.001", "period": "day", "mode": "hard"}]})
    await spend(store, secret, 1_000)
    await spend(store, secret, 1_000)  # over the rpm and over the cap, let through
    line = await budget_line(store, "agent:bot", "day")
    assert line["spent_usd"] == "0.002"
    assert (await store.audit(None, 1))[0]["code"] == "alert_overage"
    assert await types(store) == {"agent.rate_limited": 1, "budget.exceeded": 1}


async def test_require_approval_holds_until_approved_then_passes_once(
        store: StateStore) -> None:
    _, secret = await agent_key(store, {
        "on_breach": "require_approval", "approval_wait_s": 2,
        "budgets": [{"usd": "0.001", "period": "day", "mode": "hard"}]})
    await spend(store, secret, 1_000)
    with pytest.raises(ApprovalRequired) as refused:
        await store.reserve(ticket(secret, 1_000))
    assert refused.value.wait_s == 2
    approval_id = str(refused.value.details["approval_id"])
    assert refused.value.details["reason"] == "budget_exceeded"
    pending = await store.get_approval(approval_id)
    assert (pending["state"], pending["scope"], pending["estimated_usd"]) == (
        "pending", "agent:bot", "0.001")

    with pytest.raises(ApprovalRequired) as again:  # still pending: the same approval
        await store.reserve(approved(secret, 1_000, approval_id))
    assert again.value.details["approval_id"] == approval_id

    decided = await store.decide_approval(approval_id, True, "one-off")
    assert decided["state"] == "approved"
    held = await store.reserve(approved(secret, 1_000, approval_id))
    assert await store.settle(Outcome(held.id, 200, cost_micros=1_000))
    assert (await store.get_approval(approval_id))["state"] == "used"
    entry = (await store.audit(None, 1))[0]
    assert (entry["decision"], entry["code"]) == ("allowed", "approved_overage")
    with pytest.raises(ApprovalMismatch) as used:  # an approval lets one call through
        await store.reserve(approved(secret, 1_000, approval_id))
    assert (used.value.details["approval_id"], used.value.details["state"]) == (
        approval_id, "used")
    assert (await types(store))["approval.requested"] == 1
    assert (await types(store))["approval.decided"] == 1


async def test_a_denied_approval_cannot_be_used_nor_decided_twice(store: StateStore) -> None:
    _, secret = await agent_key(store, {
        "on_breach": "require_approval", "rpm": 0})
    with pytest.raises(ApprovalRequired) as refused:
        await store.reserve(ticket(secret, 0))
    approval_id = str(refused.value.details["approval_id"])
    assert (await store.decide_approval(approval_id, False))["state"] == "denied"
    with pytest.raises(ValueError, match="already denied"):
        await store.decide_approval(approval_id, True)
    with pytest.raises(ApprovalMismatch, match="denied"):
        await store.reserve(approved(secret, 0, approval_id))
    assert [a["state"] for a in await store.list_approvals()] == ["denied"]


async def test_revoking_an_agent_revokes_every_key_and_announces_each(
        store: StateStore) -> None:
    first, _ = await store.create_key(NewKey(agent="bot"))
    second, _ = await store.create_key(NewKey(agent="bot"))
    await store.create_key(NewKey(agent="other"))
    assert sorted(await store.revoke_keys(agent="bot")) == sorted([first.id, second.id])
    assert await store.revoke_keys(agent="bot") == []  # nothing live is left
    assert await types(store) == {"key.revoked": 2}
    await store.revoke_key(first.id)  # revoking again announces nothing new
    assert await types(store) == {"key.revoked": 2}


async def test_revoking_a_group(store: StateStore) -> None:
    await store.create_agent("a1", "fleet")
    await store.create_agent("a2", "fleet")
    k1, _ = await store.create_key(NewKey(agent="a1"))
    k2, _ = await store.create_key(NewKey(agent="a2"))
    assert sorted(await store.revoke_keys(group="fleet")) == sorted([k1.id, k2.id])


async def test_an_expired_key_is_announced_once(store: StateStore, clock: Clock) -> None:
    _, secret = await store.create_key(NewKey(agent="bot", ttl_seconds=1))
    clock.advance(2)
    for _ in range(3):
        with pytest.raises(Exception, match="expired"):
            await store.reserve(ticket(secret, 0))
    assert await types(store) == {"key.expired": 1}
