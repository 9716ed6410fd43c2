"""Money out (`flow: out` budgets) and spend count apart: each call only toward the budgets
of its flow, on counters of their own."""

from __future__ import annotations

from outlay.policy.decide import decide
from outlay.policy.decision import Admit, Call, Counter, Hold, KeyInfo, Refuse, ScopeView
from outlay.policy.errors import BadRequest, BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.policy.periods import period_bounds

NOW = 1_710_417_600_000 + 12_345  # 2024-03-14T12:00:12.345Z
DAY_START = period_bounds("day", NOW)[0]
KEY = KeyInfo("key_1", "bot", None, {})
REFUND = Call("stripe", cost_micros=5_000_000, flow="out")
PAYMENT = Call("stripe", cost_micros=5_000_000)
POLICY = parse_policy({"budgets": [{"usd": 50, "period": "day", "flow": "out"},
                                   {"usd": 20, "period": "day"}]})


def view(**counters: Counter) -> list[ScopeView]:
    return [ScopeView("agent:bot", POLICY, counters=counters), ScopeView("global", None)]


def test_money_out_holds_only_the_out_budget_counter() -> None:
    admit = decide(REFUND, KEY, view(), NOW)
    assert isinstance(admit, Admit)
    assert admit.holds == (Hold("agent:bot", "day", DAY_START, 5_000_000, flow="out"),)
    assert admit.holds[0].counter == "day-out"
    assert admit.limits.budget_cap == 50_000_000


def test_spend_holds_only_the_spend_budget_counter() -> None:
    admit = decide(PAYMENT, KEY, view(), NOW)
    assert isinstance(admit, Admit)
    assert admit.holds == (Hold("agent:bot", "day", DAY_START, 5_000_000),)
    assert admit.holds[0].counter == "day"


def test_a_full_spend_budget_does_not_refuse_money_out_and_the_reverse() -> None:
    spend_full = view(day=Counter(DAY_START, spent=20_000_000))
    assert isinstance(decide(REFUND, KEY, spend_full, NOW), Admit)
    assert isinstance(decide(PAYMENT, KEY, spend_full, NOW), Refuse)
    out_full = view(**{"day-out": Counter(DAY_START, spent=50_000_000)})
    assert isinstance(decide(PAYMENT, KEY, out_full, NOW), Admit)
    assert isinstance(decide(REFUND, KEY, out_full, NOW), Refuse)


def test_money_out_past_the_cap_is_refused_naming_its_flow() -> None:
    held = view(**{"day-out": Counter(DAY_START, spent=40_000_000, reserved=6_000_000)})
    decision = decide(REFUND, KEY, held, NOW)
    assert isinstance(decision, Refuse)
    error = decision.error
    assert isinstance(error, BudgetExceeded)
    assert error.code == "budget_exceeded"
    assert error.details["flow"] == "out"
    assert error.details["cap_usd"] == "50"
    assert "moved out" in error.message
    assert [e.data["flow"] for e in decision.events if e.type == "budget.exceeded"] == ["out"]
    exactly = view(**{"day-out": Counter(DAY_START, spent=40_000_000, reserved=5_000_000)})
    assert isinstance(decide(REFUND, KEY, exactly, NOW), Admit)  # to the cent, not past it


def test_a_spend_refusal_says_nothing_of_flow() -> None:
    decision = decide(PAYMENT, KEY, view(day=Counter(DAY_START, spent=19_000_000)), NOW)
    assert isinstance(decision, Refuse)
    assert "flow" not in decision.error.details


def test_unknown_money_out_is_refused_only_under_a_hard_out_budget() -> None:
    unknown = Call("stripe", cost_micros=None, flow="out")
    decision = decide(unknown, KEY, view(), NOW)
    assert isinstance(decision, Refuse)
    assert isinstance(decision.error, BadRequest)
    assert decision.error.code == "price_unknown"
    assert decision.error.details["flow"] == "out"
    soft_only = [ScopeView("agent:bot", parse_policy({"budgets": [{"usd": 5, "mode": "soft"}]}))]
    assert isinstance(decide(unknown, KEY, soft_only, NOW), Admit)


SPEND_CAPPED = parse_policy({"budgets": [{"usd": 5}]})


def test_money_out_under_hard_spend_budgets_and_no_out_budget_is_refused() -> None:
    """Before money-out budgets, refunds, transfers and payouts were refused under a hard
    budget as unpriced: a scope that caps spend but not money out still refuses them."""
    for call in (REFUND, Call("stripe", cost_micros=None, flow="out")):
        views = [ScopeView("agent:bot", None), ScopeView("group:ops", SPEND_CAPPED),
                 ScopeView("global", None)]
        decision = decide(call, KEY, views, NOW)
        assert isinstance(decision, Refuse)
        error = decision.error
        assert (error.status, error.code) == (403, "money_out_not_capped")
        assert (error.details["scope"], error.details["flow"]) == ("group:ops", "out")
        assert "flow: out" in error.message
        assert "out:50/day" in error.message
        assert decision.scope == "group:ops"
        assert not decision.events
    assert isinstance(decide(PAYMENT, KEY, [ScopeView("group:ops", SPEND_CAPPED)], NOW), Admit)


def test_money_out_goes_on_with_no_hard_budget_or_beside_any_out_budget() -> None:
    soft = parse_policy({"budgets": [{"usd": 5, "mode": "soft"}]})
    shadowed = parse_policy({"budgets": [{"usd": 5, "enforce": "shadow"}]})
    soft_out = parse_policy({"budgets": [{"usd": 5, "flow": "out", "mode": "soft"}]})
    for views in ([], [ScopeView("agent:bot", soft)], [ScopeView("agent:bot", shadowed)],
                  [ScopeView("agent:bot", SPEND_CAPPED), ScopeView("global", soft_out)]):
        assert isinstance(decide(REFUND, KEY, views, NOW), Admit), views


def test_an_unpriced_vendor_call_is_refused_under_a_hard_money_out_budget_alone() -> None:
    """An endpoint Outlay has no price for may move money out (a Treasury outbound payment):
    a scope capping money out refuses it as it refuses it under a spend cap."""
    out_only = [ScopeView("agent:bot", parse_policy({"budgets": [
        {"usd": 50, "period": "day", "flow": "out"}]}))]
    unknown = Call("stripe", cost_micros=None, operation=("POST", "/v1/treasury/x"))
    decision = decide(unknown, KEY, out_only, NOW)
    assert isinstance(decision, Refuse)
    assert decision.error.code == "price_unknown"
    unpriced_model = Call("openai", model="nobody-knows", cost_micros=None)
    assert isinstance(decide(unpriced_model, KEY, out_only, NOW), Admit)  # not a vendor call
