"""The Redis plan made from a template kept per list of scopes, flow and hour is the plan
worked out afresh for every call, as `plan` made it before templates (`_reference`, kept
here as the oracle): the same checks, record and script argument, for random policies,
calls, approvals and moments, the kept templates reused across calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from outlay.policy.decision import Call, Grant
from outlay.policy.loop_check import loop_rule
from outlay.policy.loop_guard import LoopGuard
from outlay.policy.model import Budget, Policy
from outlay.policy.pacing import PAUSE, Slot, WithSlot, is_endpoint
from outlay.policy.periods import period_bounds
from outlay.policy.rules import rules_of
from outlay.policy.windows import LIMIT_CODES, bucket_ms
from outlay.state.redis.plan import (
    BLOCK,
    SHADOW,
    Check,
    Holder,
    Names,
    Plans,
    blocks,
    check_args,
    counter_ttl_ms,
    plan,
)

SCOPES = ("key:k", "agent:a", "group:g", "tag:team=x", "endpoint:openai:0", "vendor:openai",
          "global")
NOW = 1_765_000_000_000
DAY_MS = 86_400_000


def _reference(
    names: Names, call: Call, scopes: Sequence[str], policies: Mapping[str, Policy],
    now_ms: int, grant: Grant | None, holder: Holder,
) -> tuple[tuple[Check, ...], dict[str, Any]]:
    """`plan` as it was before templates: every check worked out for the call itself."""
    cost = call.cost_micros or 0
    checks: list[Check] = []
    holds: list[tuple[str, int, str, str, int]] = []
    tpm: list[tuple[str, str]] = []
    parallel: list[str] = []
    for scope in scopes:
        policy = policies.get(scope)
        if policy is None:
            continue
        if is_endpoint(scope):
            checks.append(Check(scope, "z", names.pause(scope), PAUSE, 0, 0, 0, BLOCK))
        for name, limit, tokens in rules_of(policy).windows:
            weight = call.tokens if tokens else 1
            if weight == 0:
                continue
            key = names.window(scope, name)
            width = bucket_ms(name)
            block = blocks(policy, scope, LIMIT_CODES[name], grant)
            checks.append(Check(scope, "w", key, name, width, limit, weight, block))
            if tokens:
                tpm.append((key, str(width)))
        if policy.max_parallel is not None:
            key = names.inflight(scope)
            block = blocks(policy, scope, "concurrency_limit_exceeded", grant)
            checks.append(Check(scope, "p", key, "", policy.max_parallel, 0, 0, block))
            parallel.append(key)
    for scope in scopes:
        policy = policies.get(scope)
        if policy is None or not rules_of(policy).budgets:
            continue
        block = blocks(policy, scope, "budget_exceeded", grant)
        held: dict[str, int] = {}
        for rule in rules_of(policy).budgets:
            if rule.flow != call.flow:
                continue
            start = period_bounds(rule.period, now_ms)[0]
            key = names.counter(scope, rule.counter, start)
            first = key not in held
            if first:
                held[key] = len(holds)
                holds.append((key, int(rule.watched), scope, rule.counter, start))
            elif rule.watched:
                k, _, s, p, at = holds[held[key]]
                holds[held[key]] = (k, 1, s, p, at)
            hold = counter_ttl_ms(rule.period) if first else 0
            checks.append(Check(scope, "b", key, rule.counter, rule.cap if rule.hard else -1,
                                cost, hold, SHADOW if rule.shadow else block, start))
    record = {
        "amount": str(cost), "tokens": str(call.tokens),
        "holds": [[h[0], h[1]] for h in holds],
        "watched": [[h[2], h[3], h[4]] for h in holds if h[1]],
        "tpm": [list(t) for t in tpm], "parallel": parallel,
        "key_id": holder.key_id, "agent": holder.agent, "idem": holder.idem,
        "worker": holder.worker, "scopes": list(scopes), "flow": call.flow,
    }
    return tuple(checks), record


limits = st.one_of(st.none(), st.integers(1, 10**9))
budgets = st.builds(
    Budget, st.integers(0, 10**10), st.sampled_from(["hour", "day", "week", "month", "total"]),
    st.sampled_from(["hard", "soft"]), st.one_of(st.none(), st.just(0.8)),
    st.sampled_from(["enforce", "shadow"]), st.just(()), st.sampled_from(["spend", "out"]))
policies = st.builds(
    Policy, rpm=limits, rph=limits, rpd=limits, tpm=limits,
    max_parallel=st.one_of(st.none(), st.integers(1, 9)),
    budgets=st.lists(budgets, max_size=3).map(tuple),
    on_breach=st.sampled_from(["block", "alert", "require_approval"]),
    enforce=st.sampled_from(["enforce", "shadow"]),
    loop_guard=st.one_of(st.none(), st.just(LoopGuard(3, 60))))
calls = st.builds(
    Call, st.just("openai"), cost_micros=st.one_of(st.none(), st.integers(0, 10**9)),
    tokens=st.sampled_from([0, 1, 300, 10**6]), flow=st.sampled_from(["spend", "out"]))
grants = st.one_of(st.none(), st.just(Grant("ap", frozenset(
    {("key:k", "budget_exceeded"), ("agent:a", "rate_limit_exceeded")}))))
# endpoints as a worker's settings make them (their limits fixed while the settings stand;
# the same endpoint with other limits: settings reloaded)
ENDPOINTS = (None, Slot("endpoint:openai:1", Policy()),
             Slot("endpoint:openai:1", Policy(rpm=7, max_parallel=2)),
             Slot("endpoint:openai:2", Policy(tpm=50)))
moments = st.one_of(st.integers(NOW, NOW + 2 * DAY_MS), st.integers(0, 2 * NOW))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(SCOPES), policies, max_size=len(SCOPES)),
       st.lists(st.tuples(st.lists(st.sampled_from(SCOPES), min_size=1, max_size=4,
                                   unique=True).map(tuple),
                          calls, moments, grants, st.booleans(), st.sampled_from(ENDPOINTS)),
                min_size=1, max_size=12))
def test_a_kept_templates_plan_is_the_plan_worked_out_afresh(
    own: dict[str, Policy],
    steps: list[tuple[tuple[str, ...], Call, int, Grant | None, bool, Slot | None]],
) -> None:
    names = Names("t")
    plans = Plans(names)
    for scopes, call, now, grant, resolved, slot in steps:
        holder = Holder("k", "a", "", "w")
        # a call's own resolved policies (a copy) are planned, never kept
        policies: Mapping[str, Policy] = dict(own) if resolved else own
        if slot is not None:  # the endpoint it goes to: its limits, a view of the rest
            scopes, policies = (*scopes, slot.scope), WithSlot(policies, slot)
        planned = plans.planned(call, scopes, policies, own, now, grant, holder)
        checks, record = _reference(names, call, scopes, policies, now, grant, holder)
        assert planned.checks == checks
        assert planned.record == record
        assert planned.args == check_args(checks)
        assert planned.loop == loop_rule((s, policies.get(s)) for s in scopes)
        assert (planned.loop is not None) == any(
            p is not None and p.loop_guard is not None for p in map(policies.get, scopes))
        assert plan(names, call, scopes, policies, now, grant, holder) == (checks, record)


def test_templates_are_kept_per_list_flow_tokens_and_hour_under_the_same_policies() -> None:
    own = {"key:k": Policy(rpm=5, tpm=100, budgets=(Budget(10, "day"),))}
    plans = Plans(Names("t"))
    holder = Holder("k", "a", "", "w")
    for tokens, cost in ((0, 5), (10, 7), (30, 9)):
        plans.planned(Call("openai", cost_micros=cost, tokens=tokens), ("key:k",), own, own,
                      NOW, None, holder)
    assert len(plans._made) == 2  # with tokens, and without
    plans.planned(Call("openai"), ("key:k",), own, own, NOW + 3_600_000, None, holder)
    assert len(plans._made) == 3
    new = {**own}
    plans.planned(Call("openai"), ("key:k",), new, new, NOW, None, holder)
    assert len(plans._made) == 1  # new policies: the old templates are gone


def test_at_most_limit_templates_are_kept() -> None:
    own: dict[str, Policy] = {}
    plans = Plans(Names("t"))
    plans.LIMIT = 3
    for i in range(10):
        plans.planned(Call("openai"), (f"key:{i}",), own, own, NOW, None,
                      Holder("k", "a", "", "w"))
        assert len(plans._made) <= 3


def test_a_calls_endpoint_keeps_its_template_until_the_endpoints_limits_change() -> None:
    own = {"key:k": Policy(rpm=5, budgets=(Budget(10, "day"),))}
    plans = Plans(Names("t"))
    holder = Holder("k", "a", "", "w")
    slot = Slot("endpoint:openai:0", Policy(rpm=60))
    scopes = ("key:k", "global", slot.scope)
    first = plans.planned(Call("openai", cost_micros=3), scopes, WithSlot(own, slot), own,
                          NOW, None, holder)
    made = dict(plans._made)
    again = plans.planned(Call("openai", cost_micros=4), scopes, WithSlot(own, slot), own,
                          NOW, None, holder)
    assert len(made) == 1
    assert next(iter(plans._made.values()))[0] is next(iter(made.values()))[0]  # kept
    assert [c.kind for c in again.checks] == [c.kind for c in first.checks] == [
        "w", "z", "w", "b"]
    assert again.checks[-1].b == 4
    reloaded = Slot(slot.scope, Policy(rpm=30))  # settings reloaded: the endpoint's new limits
    changed = plans.planned(Call("openai"), scopes, WithSlot(own, reloaded), own, NOW, None,
                            holder)
    assert changed.checks[2].b == 30
    # policies of the call's own (tag scopes resolved) under the endpoint: never kept
    plans.planned(Call("openai"), scopes, WithSlot(dict(own), slot), own, NOW, None, holder)
    assert len(plans._made) == 1
