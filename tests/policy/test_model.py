"""Policies and scopes: every field parsed, every bad value refused with the field named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outlay.policy.model import Budget, Policy, PolicyError, parse_budget, parse_policy, parse_scope

FULL: dict[str, Any] = {
    "rpm": 60,
    "rph": 200,
    "rpd": 5000,
    "tpm": 100_000,
    "max_parallel": 10,
    "budgets": [
        {"usd": 50, "period": "month", "mode": "hard", "warn_at": 0.8},
        {"usd": 5, "period": "day", "mode": "soft"},
    ],
    "models": ["gpt-4o-mini", "claude-*", "fast"],
    "free_models_only": False,
    "vendors": ["openai", "stripe"],
    "on_breach": "block",
}


def test_the_spec_example_parses_to_every_field() -> None:
    policy = parse_policy(FULL)
    assert policy == Policy(
        rpm=60, rph=200, rpd=5000, tpm=100_000, max_parallel=10,
        budgets=(Budget(50_000_000, "month", "hard", 0.8), Budget(5_000_000, "day", "soft")),
        models=("gpt-4o-mini", "claude-*", "fast"),
        free_models_only=False,
        vendors=("openai", "stripe"),
        on_breach="block",
    )


def test_every_field_is_optional() -> None:
    assert parse_policy({}) == Policy()
    assert parse_policy(None) == Policy()
    policy = Policy()
    assert (policy.rpm, policy.budgets, policy.models, policy.vendors) == (None, (), None, None)
    assert (policy.free_models_only, policy.on_breach) == (False, "block")


@pytest.mark.parametrize("name", ["rpm", "rph", "rpd", "tpm", "max_parallel", "budgets",
                                  "models", "vendors"])
def test_null_means_absent(name: str) -> None:
    assert parse_policy({name: None}) == Policy()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"rpm": 1, "rps": 5}, "rps"),
        ({"budget": []}, "budget"),
        ({"rpm": -1}, "rpm"),
        ({"rpm": 1.5}, "rpm"),
        ({"rpm": "60"}, "rpm"),
        ({"rpm": True}, "rpm"),
        ({"rph": -5}, "rph"),
        ({"rpd": [1]}, "rpd"),
        ({"tpm": 10.0}, "tpm"),
        ({"max_parallel": False}, "max_parallel"),
        ({"max_parallel": -1}, "max_parallel"),
        ({"budgets": {"usd": 5}}, "budgets"),
        ({"budgets": "50"}, "budgets"),
        ({"budgets": False}, "budgets"),
        ({"budgets": 0}, "budgets"),
        ({"budgets": [5]}, "budgets[0]"),
        ({"budgets": [{"period": "day"}]}, "budgets[0].usd"),
        ({"budgets": [{"usd": -1}]}, "budgets[0].usd"),
        ({"budgets": [{"usd": "ten"}]}, "budgets[0].usd"),
        ({"budgets": [{"usd": float("nan")}]}, "budgets[0].usd"),
        ({"budgets": [{"usd": True}]}, "budgets[0].usd"),
        ({"budgets": [{"usd": "1e999999999"}]}, "budgets[0].usd"),
        ({"budgets": [{"usd": 1, "period": "year"}]}, "budgets[0].period"),
        ({"budgets": [{"usd": 1, "period": "Month"}]}, "budgets[0].period"),
        ({"budgets": [{"usd": 1, "period": None}]}, "budgets[0].period"),
        ({"budgets": [{"usd": 1, "mode": "strict"}]}, "budgets[0].mode"),
        ({"budgets": [{"usd": 1, "warn_at": 0}]}, "budgets[0].warn_at"),
        ({"budgets": [{"usd": 1, "warn_at": 1.5}]}, "budgets[0].warn_at"),
        ({"budgets": [{"usd": 1, "warn_at": -0.2}]}, "budgets[0].warn_at"),
        ({"budgets": [{"usd": 1, "warn_at": "0.8"}]}, "budgets[0].warn_at"),
        ({"budgets": [{"usd": 1, "warn_at": True}]}, "budgets[0].warn_at"),
        ({"budgets": [{"usd": 1, "warn_at": float("nan")}]}, "budgets[0].warn_at"),
        ({"budgets": [{"usd": 1, "cap": 2}]}, "cap"),
        ({"budgets": [{"usd": 1}, {"usd": 2, "mode": "x"}]}, "budgets[1].mode"),
        ({"budgets": [{"usd": 1, "flow": "in"}]}, "budgets[0].flow"),
        ({"budgets": [{"usd": 1, "flow": "Spend"}]}, "budgets[0].flow"),
        ({"budgets": [{"usd": 1, "flow": None}]}, "budgets[0].flow"),
        ({"budgets": [{"usd": 1, "flow": ["out"]}]}, "budgets[0].flow"),
        ({"budgets": [{"usd": 1}, {"usd": 2, "flow": "spent"}]}, "budgets[1].flow"),
        ({"models": "gpt-4o"}, "models"),
        ({"models": [""]}, "models"),
        ({"models": ["gpt-4o", 4]}, "models"),
        ({"vendors": "stripe"}, "vendors"),
        ({"vendors": [None]}, "vendors"),
        ({"free_models_only": "yes"}, "free_models_only"),
        ({"free_models_only": 1}, "free_models_only"),
        ({"on_breach": "deny"}, "on_breach"),
        ({"on_breach": ["block"]}, "on_breach"),
        ({"approval_wait_s": -1}, "approval_wait_s"),
        ({"approval_wait_s": "5"}, "approval_wait_s"),
        ({"approval_wait_s": True}, "approval_wait_s"),
        ({"approval_wait_s": float("nan")}, "approval_wait_s"),
        ({"approval_wait_s": float("inf")}, "approval_wait_s"),
    ],
)
def test_bad_values_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw)
    assert field in str(caught.value)


@pytest.mark.parametrize("raw", [[], "rpm: 5", 5, ["rpm"]])
def test_a_policy_must_be_an_object(raw: object) -> None:
    with pytest.raises(PolicyError, match="must be an object"):
        parse_policy(raw)


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_a_budget_flow_of_spend_is_the_default_and_changes_nothing() -> None:
    spend = parse_budget({"usd": 5, "period": "day", "flow": "spend"})
    assert spend == parse_budget({"usd": 5, "period": "day"})
    assert "flow" not in spend.to_dict()


@pytest.mark.parametrize("flow", ["in", "OUT", "", 1, True, None, {"out": 1}])
def test_a_budget_flow_other_than_spend_or_out_is_refused_naming_the_field(
        flow: object) -> None:
    with pytest.raises(PolicyError, match=r"budgets\[2\]\.flow must be 'spend' or 'out'") as caught:
        parse_budget({"usd": 5, "flow": flow}, 2)
    assert caught.value.field == "budgets[2].flow"


def test_a_money_out_budget_keeps_its_flow_and_counter_apart_from_spend() -> None:
    policy = parse_policy({"budgets": [{"usd": 50, "period": "day", "flow": "out"},
                                       {"usd": 10, "period": "day"}]})
    out, spend = policy.budgets
    assert (out.flow, out.counter) == ("out", "day-out")
    assert (spend.flow, spend.counter) == ("spend", "day")
    assert out.to_dict() == {"usd": "50", "period": "day", "mode": "hard", "flow": "out"}
    assert parse_policy(policy.to_dict()) == policy


def test_a_money_out_budget_cannot_downgrade_models() -> None:
    with pytest.raises(PolicyError, match=r"budgets\[0\]\.on_exceeded applies to a spend"):
        parse_budget({"usd": 5, "flow": "out", "on_exceeded": {"downgrade_to": "gpt-4o-mini"}})


def test_budget_defaults_hard_month_without_warning() -> None:
    assert parse_budget({"usd": "12.5"}) == Budget(12_500_000, "month", "hard", None)


@pytest.mark.parametrize("period", ["hour", "day", "week", "month", "total"])
@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_every_period_and_mode(period: str, mode: str) -> None:
    budget = parse_budget({"usd": 0.01, "period": period, "mode": mode, "warn_at": 1})
    assert (budget.cap_micros, budget.period, budget.mode, budget.warn_at) == (
        10_000, period, mode, 1.0)


def test_limits_and_lists_keep_their_values() -> None:
    policy = parse_policy({"rpm": 0, "models": [], "vendors": ["*"], "free_models_only": True,
                           "on_breach": "require_approval", "approval_wait_s": 30})
    assert policy.rpm == 0
    assert policy.models == ()  # an empty allow-list allows nothing
    assert policy.vendors == ("*",)
    assert policy.free_models_only is True
    assert policy.on_breach == "require_approval"
    assert policy.approval_wait_s == 30.0


@pytest.mark.parametrize(
    "raw",
    [
        FULL,
        {},
        {"rpm": 1},
        {"budgets": [{"usd": "0.000001", "period": "total"}]},
        {"budgets": [{"usd": 0.1, "period": "week", "mode": "soft", "warn_at": 0.5}],
         "free_models_only": True, "on_breach": "alert", "approval_wait_s": 2.5},
        {"models": [], "vendors": []},
    ],
)
def test_to_dict_round_trips_through_json(raw: dict[str, Any]) -> None:
    policy = parse_policy(raw)
    stored = json.loads(json.dumps(policy.to_dict()))
    assert parse_policy(stored) == policy


def test_to_dict_renders_usd_exactly_and_omits_defaults() -> None:
    assert parse_policy({"budgets": [{"usd": 0.1}]}).to_dict() == {
        "budgets": [{"usd": "0.1", "period": "month", "mode": "hard"}],
        "on_breach": "block",
    }
    out = parse_policy(FULL).to_dict()
    assert out["budgets"][0] == {"usd": "50", "period": "month", "mode": "hard", "warn_at": 0.8}
    assert out["models"] == FULL["models"]
    assert "free_models_only" not in out


@pytest.mark.parametrize(
    "scope",
    ["global", "key:key_0123abcd", "agent:order-processor", "group:billing-agents",
     "vendor:stripe", "agent:with:colon"],
)
def test_parse_scope_accepts_the_five_kinds(scope: str) -> None:
    assert parse_scope(scope) == scope


@pytest.mark.parametrize(
    "scope",
    ["", "global:x", "Global", "user:bob", "agent:", "agent", ":bob", "key", "vendor:"],
)
def test_parse_scope_refuses_others(scope: str) -> None:
    with pytest.raises(PolicyError, match="invalid scope"):
        parse_scope(scope)
