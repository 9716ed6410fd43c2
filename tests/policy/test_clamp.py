"""Clamping: an LLM call is sent with a smaller maximum output than it asked for (or than the
model's), so that it fits the hard budgets, unless a scope's policy says
`clamp_max_tokens: false`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from outlay.policy.decide import clamped, decide
from outlay.policy.decision import Admit, Call, Clamp, Counter, Grant
from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import CLAMP_OFF, DEFAULT_CLAMP_FLOOR, Policy, PolicyError, parse_policy

from .test_decide import KEY, MONTH_START, NOW, admitted, refused, views

# 1,000 input tokens at $1/M, up to 4,000 output tokens at $2/M: 1,000 + 8,000 micro-USD
CLAMP = Clamp(base=1_000 * 1_000_000, per_token=2_000_000, limit=4_000)
CALL = Call("openai", "m", "m", cost_micros=9_000, tokens=5_000, clamp=CLAMP)


def spent(scope: str, micros: int) -> dict[str, dict[str, Counter]]:
    return {scope: {"month": Counter(MONTH_START, micros, 0)}}


def budget(usd: float, **policy: Any) -> dict[str, Any]:
    return {"budgets": [{"usd": usd, "period": "month"}], **policy}


# -- the cost as a function of the maximum ------------------------------------------------

def test_clamp_cost_is_the_estimate_at_every_maximum() -> None:
    assert CLAMP.cost(4_000) == 9_000
    assert CLAMP.cost(0) == 1_000
    assert Clamp(base=1, per_token=1, limit=10).cost(1) == 1  # rounded up once
    assert Clamp(base=0, per_token=1, limit=10).cost(0) == 0


@pytest.mark.parametrize("micros", [0, 999, 1_000, 1_001, 1_002, 5_000, 8_999, 9_000, 50_000])
def test_most_within_is_the_largest_maximum_that_fits(micros: int) -> None:
    most = CLAMP.most_within(micros)
    if most >= 0:
        assert CLAMP.cost(most) <= micros
    if most < CLAMP.limit:
        assert CLAMP.cost(most + 1) > micros
    assert most <= CLAMP.limit


def test_a_call_whose_output_is_free_cannot_be_clamped_cheaper() -> None:
    free_output = Clamp(base=5_000_000, per_token=0, limit=100)
    assert free_output.most_within(5) == 100
    assert free_output.most_within(4) == -1


# -- the decision ---------------------------------------------------------------------------

def test_a_call_over_the_budget_is_clamped_to_fit() -> None:
    room = 5_000  # $0.01 cap, $0.005 spent
    decision = admitted(decide(CALL, KEY, views(
        {"agent:bot": budget(0.01, clamp_max_tokens=True)},
        counters=spent("agent:bot", 10_000 - room)), NOW))
    assert decision.call is not None
    assert decision.call.clamped_to == 2_000  # 1,000 + 2,000 x 2 micro-USD = the room
    assert decision.call.cost_micros == 5_000
    assert decision.call.tokens == 5_000 - 2_000
    assert decision.call.clamp is None
    assert [h.amount for h in decision.holds] == [5_000]
    assert decision.limits.budget_remaining == 0


def test_a_call_that_fits_is_not_clamped() -> None:
    decision = admitted(decide(CALL, KEY, views(
        {"agent:bot": budget(1, clamp_max_tokens=True)}), NOW))
    assert decision.call is None
    assert [h.amount for h in decision.holds] == [9_000]


def test_without_the_policy_the_call_is_clamped_to_the_default_floor_or_more() -> None:
    decision = admitted(decide(CALL, KEY, views(
        {"agent:bot": budget(0.01)}, counters=spent("agent:bot", 5_000)), NOW))
    assert decision.call is not None
    assert decision.call.clamped_to == 2_000
    assert [h.amount for h in decision.holds] == [5_000]
    # room for 255 output tokens only: under the default floor of 256, refused as asked
    room = CLAMP.cost(DEFAULT_CLAMP_FLOOR) - 1
    below = decide(CALL, KEY, views(
        {"agent:bot": budget(0.01)}, counters=spent("agent:bot", 10_000 - room)), NOW)
    error = refused(below, BudgetExceeded, "budget_exceeded")
    assert "0.009" in error.message


def test_clamp_max_tokens_false_keeps_strict_refusal() -> None:
    for scope in ("agent:bot", "global"):
        decision = decide(CALL, KEY, views(
            {"agent:bot": budget(0.01), scope: {**budget(0.01), "clamp_max_tokens": False}},
            counters=spent("agent:bot", 5_000)), NOW)
        refused(decision, BudgetExceeded, "budget_exceeded")


NAMED = Clamp(base=1_000 * 1_000_000, per_token=2_000_000, limit=1_024, named=True)
NAMED_CALL = Call("anthropic", "m", "m", cost_micros=NAMED.cost(1_024), tokens=2_024,
                  clamp=NAMED)


def test_a_call_that_named_its_maximum_is_lowered_down_to_the_floor() -> None:
    room = NAMED.cost(300)
    decision = admitted(decide(NAMED_CALL, KEY, views(
        {"agent:bot": budget(0.01)}, counters=spent("agent:bot", 10_000 - room)), NOW))
    assert decision.call is not None
    assert decision.call.clamped_to == 300
    assert decision.call.cost_micros == room
    below = decide(NAMED_CALL, KEY, views(
        {"agent:bot": budget(0.01)},
        counters=spent("agent:bot", 10_000 - NAMED.cost(DEFAULT_CLAMP_FLOOR) + 1)), NOW)
    refused(below, BudgetExceeded, "budget_exceeded")


def test_a_call_that_named_less_than_the_floor_is_never_lowered() -> None:
    small = replace(NAMED, limit=100)
    call = Call("anthropic", "m", "m", cost_micros=small.cost(100), tokens=1_100, clamp=small)
    decision = decide(call, KEY, views(
        {"agent:bot": budget(0.01)}, counters=spent("agent:bot", 10_000 - small.cost(99))), NOW)
    refused(decision, BudgetExceeded, "budget_exceeded")
    fits = admitted(decide(call, KEY, views(
        {"agent:bot": budget(0.01)}, counters=spent("agent:bot", 10_000 - small.cost(100))),
        NOW))
    assert fits.call is None


def test_a_call_without_a_clamp_is_refused() -> None:
    decision = decide(replace(CALL, clamp=None), KEY, views(
        {"agent:bot": budget(0.01, clamp_max_tokens=True)},
        counters=spent("agent:bot", 5_000)), NOW)
    refused(decision, BudgetExceeded, "budget_exceeded")


def test_below_the_floor_the_call_is_refused_at_its_full_cost() -> None:
    # room for 2,000 output tokens, the policy wants at least 2,001
    decision = decide(CALL, KEY, views(
        {"agent:bot": budget(0.01, clamp_max_tokens=2_001)},
        counters=spent("agent:bot", 5_000)), NOW)
    error = refused(decision, BudgetExceeded, "budget_exceeded")
    assert "0.009" in error.message  # the cost of the call as asked
    at_floor = admitted(decide(CALL, KEY, views(
        {"agent:bot": budget(0.01, clamp_max_tokens=2_000)},
        counters=spent("agent:bot", 5_000)), NOW))
    assert at_floor.call is not None
    assert at_floor.call.clamped_to == 2_000


def test_no_room_at_all_is_refused() -> None:
    decision = decide(CALL, KEY, views(
        {"agent:bot": budget(0.01, clamp_max_tokens=1)},
        counters=spent("agent:bot", 10_000)), NOW)
    refused(decision, BudgetExceeded, "budget_exceeded")


def test_the_tightest_hard_budget_of_every_scope_sets_the_maximum() -> None:
    # the key allows clamping; the group's budget has the least room left
    decision = admitted(decide(CALL, KEY, views({
        "key:key_1": {"clamp_max_tokens": 10},
        "agent:bot": budget(1),
        "group:fleet": budget(0.01),
        "global": {"budgets": [{"usd": 0.004, "period": "month", "mode": "soft"}]},
    }, counters={**spent("agent:bot", 0), **spent("group:fleet", 7_000)}), NOW))
    assert decision.call is not None
    assert decision.call.clamped_to == 1_000  # 1,000 + 1,000 x 2 = 3,000 left in the group
    assert {h.scope: h.amount for h in decision.holds} == {
        "agent:bot": 3_000, "group:fleet": 3_000, "global": 3_000}


def test_budgets_that_let_a_breach_through_do_not_clamp() -> None:
    alert = budget(0.01, clamp_max_tokens=True, on_breach="alert")
    decision = admitted(decide(CALL, KEY, views(
        {"agent:bot": alert}, counters=spent("agent:bot", 5_000)), NOW))
    assert decision.call is None
    assert decision.overage


def test_an_approved_breach_is_not_clamped_but_an_unapproved_one_is() -> None:
    policy = budget(0.01, clamp_max_tokens=True, on_breach="require_approval")
    counters = spent("agent:bot", 5_000)
    grant = Grant("apr_0123456789abcdef", frozenset({("agent:bot", "budget_exceeded")}))
    approved = admitted(decide(CALL, KEY, views({"agent:bot": policy}, counters=counters),
                               NOW, grant=grant))
    assert approved.call is None
    assert approved.overage
    assert approved.approved
    pending = admitted(decide(CALL, KEY, views({"agent:bot": policy}, counters=counters), NOW))
    assert pending.call is not None
    assert not pending.overage


def test_a_clamped_call_meets_the_token_window_with_its_clamped_tokens() -> None:
    # tpm 3,500 is under the 5,000 the call asks for, over the 3,000 it is clamped to
    policies = {"agent:bot": {**budget(0.01, clamp_max_tokens=True), "tpm": 3_500}}
    counters = spent("agent:bot", 5_000)
    decision = decide(CALL, KEY, views(policies, counters=counters), NOW)
    assert isinstance(decision, Admit)
    assert decision.limits.tokens_remaining == 500


def test_clamped_leaves_other_calls_alone() -> None:
    assert clamped(replace(CALL, cost_micros=None), views({}), NOW).clamp is CLAMP
    below_floor = views({"agent:bot": budget(0.001)})
    assert clamped(CALL, below_floor, NOW) is CALL


# -- the policy field -------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "floor"), [
    (True, DEFAULT_CLAMP_FLOOR), (False, CLAMP_OFF), (None, None), (1, 1), (4096, 4096)])
def test_clamp_max_tokens_values(raw: object, floor: int | None) -> None:
    policy = parse_policy({"clamp_max_tokens": raw})
    assert policy.clamp_max_tokens == floor
    assert parse_policy(policy.to_dict()) == policy


@pytest.mark.parametrize("raw", [0, -1, 1.5, "yes", [256]])
def test_bad_clamp_max_tokens_is_refused(raw: object) -> None:
    with pytest.raises(PolicyError, match="clamp_max_tokens"):
        parse_policy({"clamp_max_tokens": raw})


def test_clamping_is_on_by_default_and_false_is_kept() -> None:
    assert Policy().clamp_max_tokens is None
    assert "clamp_max_tokens" not in parse_policy({}).to_dict()
    assert parse_policy({"clamp_max_tokens": False}).to_dict()["clamp_max_tokens"] is False


# -- a call that names its own floor (a Twilio call's minutes) --------------------------------

MINUTES = Clamp(base=0, per_token=14_000 * 1_000_000, limit=240, floor=1)  # $0.014 a minute
PHONE = Call("twilio", cost_micros=MINUTES.cost(240), clamp=MINUTES)


def test_a_call_with_its_own_floor_is_clamped_without_the_policy() -> None:
    decision = admitted(decide(PHONE, KEY, views(
        {"agent:bot": budget(1)}, counters=spent("agent:bot", 0)), NOW))
    assert decision.call is not None
    assert (decision.call.clamped_to, decision.call.cost_micros) == (71, 994_000)


def test_a_call_whose_floor_does_not_fit_is_refused() -> None:
    decision = decide(PHONE, KEY, views(
        {"agent:bot": budget(1)}, counters=spent("agent:bot", 1_000_000 - 13_999)), NOW)
    refused(decision, BudgetExceeded, "budget_exceeded")


def test_a_policys_token_floor_does_not_apply_to_minutes() -> None:
    decision = admitted(decide(PHONE, KEY, views(
        {"agent:bot": budget(1, clamp_max_tokens=500)}), NOW))
    assert decision.call is not None
    assert decision.call.clamped_to == 71
