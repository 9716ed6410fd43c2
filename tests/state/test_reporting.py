"""What admins read: live usage of a scope (SPEC §4) and the audit ledger, newest first."""

from __future__ import annotations

import pytest

from outlay.policy.errors import AuthError, BudgetExceeded, RateLimited
from outlay.policy.model import parse_policy
from outlay.policy.money import usd_to_micros
from outlay.state.base import NewKey, Outcome, Settled, StateStore

from .support import Clock, ledger_cost, ticket

USAGE_KEYS = {"scope", "windows", "budgets", "spend_by_model", "spend_by_vendor"}
WINDOW_KEYS = {"name", "limit", "used", "remaining", "reset_at"}
BUDGET_KEYS = {"period", "mode", "cap_usd", "spent_usd", "reserved_usd", "remaining_usd",
               "resets_at"}
AUDIT_KEYS = {"request_id", "time", "key_id", "agent", "labels", "vendor", "model", "decision",
              "status", "reserved_usd", "cost_usd", "spent_usd", "cap_usd"}
# Beyond SPEC §4, pinned so that every backend answers alike: when spend_by_* starts counting,
# each budget's warn_at, and the audit row's group, route, refusal code and settlement.
USAGE_EXTRA = {"spend_since", "exhausted_at"}
BUDGET_EXTRA = {"warn_at", "flow", "projected_usd"}
AUDIT_EXTRA = {"group", "route", "code", "refused_by", "settlement", "overrun_usd", "replay_of",
               "waited_ms", "held_usd", "estimated_usd", "flow"}


async def test_usage_has_the_spec_shape(store: StateStore, clock: Clock) -> None:
    await store.create_agent("bot", "fleet")
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({
        "rpm": 10, "rph": 100, "tpm": 5_000,
        "budgets": [{"usd": 0.05, "period": "month", "warn_at": 0.8},
                    {"usd": 0.01, "period": "day", "mode": "soft"}],
    }))
    clock.advance(0.5)
    first = await store.reserve(ticket(secret, 4_000, tokens=300))
    await store.settle(Outcome(first.id, 200, cost_micros=2_500, tokens=200))
    second = await store.reserve(ticket(secret, 1_200, model="claude-3-5-haiku",
                                        vendor="anthropic", tokens=100))
    await store.settle(Outcome(second.id, 200, cost_micros=1_000, tokens=100))
    await store.reserve(ticket(secret, 3_000, vendor="stripe", model=None))  # still held
    clock.advance(10)

    usage = await store.usage("agent:bot")
    assert set(usage) == USAGE_KEYS | USAGE_EXTRA
    assert usage["scope"] == "agent:bot"
    assert usage["windows"] == [
        # the calls' buckets began at 12:00:00: they count for one window from then
        {"name": "rpm", "limit": 10, "used": 3, "remaining": 7,
         "reset_at": "2024-03-14T12:01:00Z"},
        {"name": "rph", "limit": 100, "used": 3, "remaining": 97,
         "reset_at": "2024-03-14T13:00:00Z"},
        {"name": "tpm", "limit": 5_000, "used": 300, "remaining": 4_700,
         "reset_at": "2024-03-14T12:01:00Z"},
    ]
    for window in usage["windows"]:
        assert set(window) == WINDOW_KEYS
    month, day = usage["budgets"]
    assert set(month) == set(day) == BUDGET_KEYS | BUDGET_EXTRA
    assert month == {
        "period": "month", "mode": "hard", "cap_usd": "0.05", "spent_usd": "0.0035",
        "reserved_usd": "0.003", "remaining_usd": "0.0435", "resets_at": "2024-04-01T00:00:00Z",
        "warn_at": 0.8, "flow": "spend", "projected_usd": "0.008037",
    }
    assert day == {
        "period": "day", "mode": "soft", "cap_usd": "0.01", "spent_usd": "0.0035",
        "reserved_usd": "0.003", "remaining_usd": "0.0035", "resets_at": "2024-03-15T00:00:00Z",
        "warn_at": None, "flow": "spend", "projected_usd": "0.006999",
    }
    assert usage["spend_by_model"] == {"gpt-4o-mini": "0.0025", "claude-3-5-haiku": "0.001"}
    assert usage["spend_by_vendor"] == {"openai": "0.0025", "anthropic": "0.001"}
    assert usage["spend_since"] == "2024-03-01T00:00:00Z"
    assert usage["exhausted_at"] is None  # the month's cap, at this rate, in 190 days
    # the ledger and the counters agree on what was spent
    assert await ledger_cost(store, "agent:bot") == 3_500


async def test_usage_of_a_scope_without_a_policy(store: StateStore) -> None:
    assert await store.usage("group:nobody") == {
        "scope": "group:nobody", "windows": [], "budgets": [],
        "spend_since": "2024-03-01T00:00:00Z", "spend_by_model": {}, "spend_by_vendor": {},
        "exhausted_at": None,
    }


async def test_spend_equals_the_ledger_sum_everywhere(store: StateStore) -> None:
    await store.create_agent("bot", "fleet")
    _, secret = await store.create_key(NewKey(agent="bot"))
    _, other = await store.create_key(NewKey(agent="other"))
    scopes = ("agent:bot", "agent:other", "group:fleet", "vendor:openai", "vendor:stripe",
              "global")
    for scope in scopes:
        await store.put_policy(scope, parse_policy({"budgets": [{"usd": 1}]}))
    costs = [(secret, "openai", 1_234, "settled"), (other, "stripe", 50_000, "settled"),
             (secret, "stripe", 7_777, "void"), (other, "openai", 999, "unsettled"),
             (secret, "openai", 1, "settled")]
    for key, vendor, cost, how in costs:
        held = await store.reserve(ticket(key, cost, vendor=vendor))
        await store.settle(Outcome(held.id, 200, cost_micros=cost, settled=how))  # type: ignore[arg-type]
    for scope in scopes:
        usage = await store.usage(scope)
        spent = sum(usd_to_micros(b["spent_usd"]) for b in usage["budgets"])
        assert spent == await ledger_cost(store, scope), scope
    assert await ledger_cost(store) == 1_234 + 50_000 + 999 + 1


async def test_audit_is_newest_first_with_the_spec_fields(store: StateStore, clock: Clock) -> None:
    await store.create_agent("order-processor", "billing")
    record, secret = await store.create_key(NewKey(
        agent="order-processor", labels={"run": "r-42", "workflow": "nightly"}))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}], "rpm": 2}))
    first = await store.reserve(ticket(secret, 4_000, request_id="req_a"))
    clock.advance(1)
    await store.settle(Outcome(first.id, 200, cost_micros=3_000, model="gpt-4o-mini-2024-07-18"))
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(secret, 8_000, request_id="req_b"))
    await store.reserve(ticket(secret, 2_000, request_id="req_c", vendor="stripe", model=None))
    with pytest.raises(RateLimited):
        await store.reserve(ticket(secret, 1, request_id="req_d"))

    rows = await store.audit(None, 10)
    assert [r["request_id"] for r in rows] == ["req_d", "req_c", "req_b", "req_a"]
    for row in rows:
        assert set(row) == AUDIT_KEYS | AUDIT_EXTRA
    d, c, b, a = rows
    assert a == {
        "request_id": "req_a", "time": "2024-03-14T12:00:00Z", "key_id": record.id,
        "agent": "order-processor", "group": "billing",
        "labels": {"run": "r-42", "workflow": "nightly"}, "vendor": "openai",
        "model": "gpt-4o-mini-2024-07-18", "route": "/v1/chat/completions",
        "decision": "allowed", "code": None, "refused_by": None, "status": 200,
        "reserved_usd": "0.004", "cost_usd": "0.003", "settlement": "settled", "overrun_usd": None,
        "spent_usd": "0.003", "cap_usd": "0.01", "replay_of": None, "waited_ms": 0,
        "held_usd": None, "estimated_usd": None, "flow": "spend",
    }
    assert (b["decision"], b["code"], b["status"], b["refused_by"], b["time"]) == (
        "refused", "budget_exceeded", 402, "global", "2024-03-14T12:00:01Z")
    assert (b["reserved_usd"], b["cost_usd"], b["settlement"]) == ("0", "0", "none")
    # an allowed call still in flight: its reservation counts in the cumulative spend
    assert (c["decision"], c["status"], c["settlement"], c["vendor"], c["model"]) == (
        "allowed", None, "pending", "stripe", None)
    assert (c["reserved_usd"], c["spent_usd"], c["cap_usd"]) == ("0.002", "0.005", "0.01")
    assert (d["code"], d["status"], d["refused_by"]) == ("rate_limit_exceeded", 429, "global")


async def test_audit_limit_and_scope(store: StateStore) -> None:
    await store.create_agent("a", "fleet")
    key_a, secret_a = await store.create_key(NewKey(agent="a"))
    _, secret_b = await store.create_key(NewKey(agent="b"))
    for i in range(4):
        await store.reserve(ticket(secret_a, request_id=f"a{i}"))
        await store.reserve(ticket(secret_b, request_id=f"b{i}", vendor="stripe", model=None))
    with pytest.raises(AuthError):
        await store.reserve(ticket("olk_nope", request_id="x"))
    assert [r["request_id"] for r in await store.audit(None, 3)] == ["x", "b3", "a3"]
    assert [r["request_id"] for r in await store.audit("global", 2)] == ["x", "b3"]
    assert [r["request_id"] for r in await store.audit(f"key:{key_a.id}", 10)] == [
        "a3", "a2", "a1", "a0"]
    assert [r["request_id"] for r in await store.audit("group:fleet", 2)] == ["a3", "a2"]
    assert [r["request_id"] for r in await store.audit("agent:b", 1)] == ["b3"]
    assert [r["request_id"] for r in await store.audit("vendor:stripe", 10)] == [
        "b3", "b2", "b1", "b0"]


async def test_report(store: StateStore) -> None:
    _, secret_a = await store.create_key(NewKey(agent="a"))
    _, secret_b = await store.create_key(NewKey(agent="b"))
    settled: tuple[Settled, ...] = ("settled", "settled_estimate", "unsettled")
    for secret, cost, how in ((secret_a, 1_000, settled[0]), (secret_a, 2_000, settled[1]),
                              (secret_b, 500, settled[2])):
        held = await store.reserve(ticket(secret, cost))
        await store.settle(Outcome(held.id, 200, cost_micros=cost // 2, settled=how))
    with pytest.raises(AuthError):
        await store.reserve(ticket("olk_nope"))
    rows = await store.report("agent", None)
    # an estimate is charged what it counted, an unsettled call its whole reservation
    assert rows[:2] == [
        {"agent": "a", "requests": 2, "allowed": 2, "refused": 0, "cost_usd": "0.0015",
         "unsettled": 0, "estimated": 1, "out_usd": "0"},
        {"agent": "b", "requests": 1, "allowed": 1, "refused": 0, "cost_usd": "0.0005",
         "unsettled": 1, "estimated": 0, "out_usd": "0"},
    ]
    assert [e["settlement"] for e in await store.audit("agent:a", 10)] == [
        "settled_estimate", "settled"]
    # a budget set afterwards counts the spend already made, the estimate included
    await store.put_policy("agent:a", parse_policy({"budgets": [{"usd": 1}]}))
    (budget,) = (await store.usage("agent:a"))["budgets"]
    assert budget["spent_usd"] == "0.0015"
    assert rows[2]["agent"] is None
    assert rows[2]["refused"] == 1


async def test_usage_projects_each_budget_and_says_when_a_hard_cap_is_hit(
        store: StateStore, clock: Clock) -> None:
    """12:00 on the 14th of March: half the day gone, $0.006 of the day's $0.01 spent; at
    that rate the cap is hit at 20:00, and the day ends at $0.012."""
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("agent:bot", parse_policy({"budgets": [
        {"usd": 0.01, "period": "day"}, {"usd": 1, "period": "total"},
        {"usd": 0.001, "period": "hour", "mode": "soft"}]}))
    held = await store.reserve(ticket(secret, 6_000))
    await store.settle(Outcome(held.id, 200, cost_micros=6_000))
    usage = await store.usage("agent:bot")
    assert [(b["period"], b["projected_usd"]) for b in usage["budgets"]] == [
        ("day", "0.012"), ("total", None), ("hour", "0.6")]
    assert usage["exhausted_at"] == "2024-03-14T20:00:00Z"
