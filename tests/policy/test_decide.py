"""The pure decision: authenticate, then allow-lists, price, windows, parallel, budgets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest

from outlay.policy.decide import authenticate, decide, iso
from outlay.policy.decision import (
    Admit,
    Call,
    Counter,
    Decision,
    Hold,
    KeyInfo,
    Limits,
    Refuse,
    ScopeView,
    call_scopes,
)
from outlay.policy.errors import (
    AuthError,
    BadRequest,
    BudgetExceeded,
    NotAllowed,
    OutlayError,
    RateLimited,
)
from outlay.policy.model import Period, parse_policy
from outlay.policy.periods import period_bounds
from outlay.policy.windows import WindowState, check

NOW = 1_710_417_600_000 + 12_345  # 2024-03-14T12:00:12.345Z
MONTH_START, _month_end = period_bounds("month", NOW)
DAY_START, _day_end = period_bounds("day", NOW)
assert _month_end is not None
assert _day_end is not None
MONTH_END, DAY_END = _month_end, _day_end
KEY = KeyInfo("key_1", "bot", "fleet", {"run": "r-1"})
SCOPES = ("key:key_1", "agent:bot", "group:fleet", "vendor:openai", "global")
CHAT = Call("openai", "gpt-4o-mini", "gpt-4o-mini", cost_micros=1_500, tokens=400)


def views(
    policies: Mapping[str, dict[str, Any]],
    *,
    windows: Mapping[str, Mapping[str, WindowState]] | None = None,
    inflight: Mapping[str, int] | None = None,
    counters: Mapping[str, Mapping[str, Counter]] | None = None,
) -> list[ScopeView]:
    return [
        ScopeView(
            scope,
            parse_policy(policies[scope]) if scope in policies else None,
            (windows or {}).get(scope, {}),
            (inflight or {}).get(scope, 0),
            cast(Mapping[Period, Counter], (counters or {}).get(scope, {})),
        )
        for scope in SCOPES
    ]


def refused(decision: Decision, error_type: type[OutlayError], code: str) -> OutlayError:
    assert isinstance(decision, Refuse), decision
    assert isinstance(decision.error, error_type)
    assert decision.error.code == code
    return decision.error


def admitted(decision: Decision) -> Admit:
    assert isinstance(decision, Admit), decision
    return decision


def full_window(name: str, limit: int, now: int = NOW) -> WindowState:
    state = WindowState()
    for _ in range(limit):
        result = check(name, state, limit, 1, now)
        assert result.allowed
        state = result.state
    return state


# -- authenticate ------------------------------------------------------------------------

def test_unknown_key() -> None:
    error = authenticate(None, NOW)
    assert isinstance(error, AuthError)
    assert (error.status, error.code) == (401, "invalid_api_key")


def test_revoked_key() -> None:
    error = authenticate(KeyInfo("key_1", "bot", None, {}, revoked=True), NOW)
    assert isinstance(error, AuthError)
    assert (error.status, error.code) == (401, "key_revoked")
    assert "key_1" in error.message


def test_key_expires_exactly_at_its_expiry() -> None:
    key = KeyInfo("key_1", "bot", None, {}, expires_at_ms=NOW)
    assert authenticate(key, NOW - 1) is None
    error = authenticate(key, NOW)
    assert isinstance(error, AuthError)
    assert (error.status, error.code) == (401, "key_expired")
    assert iso(NOW) in error.message
    assert authenticate(key, NOW + 1) is not None


def test_revocation_wins_over_expiry() -> None:
    key = KeyInfo("key_1", "bot", None, {}, expires_at_ms=NOW - 1, revoked=True)
    error = authenticate(key, NOW)
    assert error is not None
    assert error.code == "key_revoked"


def test_a_live_key_passes() -> None:
    assert authenticate(KEY, NOW) is None
    assert authenticate(KeyInfo("k", "a", None, {}, expires_at_ms=NOW + 1), NOW) is None


def test_iso_is_utc_with_z() -> None:
    assert iso(NOW) == "2024-03-14T12:00:12.345000Z"
    assert iso(MONTH_END) == "2024-04-01T00:00:00Z"


def test_a_call_is_charged_to_every_scope_narrowest_first() -> None:
    assert call_scopes(KEY, "openai") == SCOPES
    assert call_scopes(KeyInfo("k", "a", None, {}), "stripe") == (
        "key:k", "agent:a", "vendor:stripe", "global")


# -- allow-lists ---------------------------------------------------------------------------

def test_vendor_not_allowed() -> None:
    error = refused(decide(Call("twilio"), KEY, views({"agent:bot": {"vendors": ["openai",
                    "stripe"]}}), NOW), NotAllowed, "vendor_not_allowed")
    assert error.status == 403
    assert error.details["allowed"] == ["openai", "stripe"]
    assert error.details["scope"] == "agent:bot"
    assert "openai, stripe" in error.message


def test_model_not_allowed_lists_the_allowed_models() -> None:
    decision = decide(Call("openai", "gpt-4o", "gpt-4o", cost_micros=1), KEY,
                      views({"group:fleet": {"models": ["gpt-4o-mini", "claude-*"]}}), NOW)
    error = refused(decision, NotAllowed, "model_not_allowed")
    assert isinstance(decision, Refuse)
    assert decision.scope == "group:fleet"
    assert error.status == 403
    assert error.details["allowed"] == ["gpt-4o-mini", "claude-*"]
    assert "gpt-4o-mini, claude-*" in error.message
    assert "'gpt-4o'" in error.message


def test_models_allowed_by_alias_and_glob() -> None:
    policy = {"key:key_1": {"models": ["fast", "claude-*"]}}
    aliases = {"fast": "gpt-4o-mini"}
    admitted(decide(CHAT, KEY, views(policy), NOW, aliases))
    admitted(decide(Call("anthropic", "claude-3-5-haiku", "claude-3-5-haiku"), KEY,
                    views(policy), NOW, aliases))


def test_free_models_only() -> None:
    policy = views({"agent:bot": {"free_models_only": True}})
    error = refused(decide(CHAT, KEY, policy, NOW, free_models=["llama-free", "tiny"]),
                    NotAllowed, "model_not_allowed")
    assert error.details["allowed"] == ["llama-free", "tiny"]
    assert "free models only" in error.message
    free = Call("openai", "llama-free", "llama-free", free=True, cost_micros=0)
    admitted(decide(free, KEY, policy, NOW))


def test_model_rules_do_not_apply_to_vendor_calls() -> None:
    policy = views({"global": {"models": ["gpt-4o-mini"], "free_models_only": True}})
    admitted(decide(Call("stripe", cost_micros=500_000), KEY, policy, NOW))


def test_every_scope_allow_list_applies() -> None:
    policy = views({"key:key_1": {"models": ["*"]}, "global": {"models": ["claude-*"]}})
    refused(decide(CHAT, KEY, policy, NOW), NotAllowed, "model_not_allowed")


# -- price ---------------------------------------------------------------------------------

UNPRICED = Call("openai", "mystery-model", None, cost_micros=None, tokens=10)


@pytest.mark.parametrize("scope", SCOPES)
def test_price_unknown_under_a_hard_budget_on_any_scope(scope: str) -> None:
    decision = decide(UNPRICED, KEY, views({scope: {"budgets": [{"usd": 5}]}}), NOW)
    error = refused(decision, BadRequest, "price_unknown")
    assert error.status == 400
    assert "mystery-model" in error.message


def test_price_unknown_is_fine_without_a_hard_budget() -> None:
    admit = admitted(decide(UNPRICED, KEY, views({"global": {"rpm": 10}}), NOW))
    assert admit.holds == ()
    soft = admitted(decide(UNPRICED, KEY, views(
        {"global": {"budgets": [{"usd": 5, "mode": "soft"}]}}), NOW))
    assert soft.holds == (Hold("global", "month", MONTH_START, 0),)


# -- windows -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "code", "span"),
    [("rpm", "rate_limit_exceeded", "minute"), ("rph", "hourly_rate_limit_exceeded", "hour"),
     ("rpd", "daily_rate_limit_exceeded", "day")],
)
def test_request_windows(name: str, code: str, span: str) -> None:
    policy = {"agent:bot": {name: 3}}
    state = full_window(name, 3)
    decision = decide(CHAT, KEY, views(policy, windows={"agent:bot": {name: state}}), NOW)
    error = refused(decision, RateLimited, code)
    assert error.status == 429
    expected_ms = check(name, state, 3, 1, NOW).retry_after_ms
    assert error.details["scope"] == "agent:bot"
    assert error.details["limit"] == 3
    assert error.details["retry_after"] == -(-expected_ms // 1000)
    assert error.headers["Retry-After"] == str(error.details["retry_after"])
    assert error.headers["X-RateLimit-Reset"] == str(-(-(NOW + expected_ms) // 1000))
    assert f"3 requests per {span}" in error.message
    # after waiting retry_after (whole seconds) the same state admits
    later = NOW + error.details["retry_after"] * 1000
    admitted(decide(CHAT, KEY, views(policy, windows={"agent:bot": {name: state}}), later))


def test_rpm_admits_exactly_the_limit_then_refuses() -> None:
    policy = {"key:key_1": {"rpm": 30}}
    state = WindowState()
    for i in range(30):
        admit = admitted(decide(CHAT, KEY, views(policy, windows={"key:key_1": {"rpm": state}}),
                                NOW))
        state = admit.windows[("key:key_1", "rpm")]
        assert admit.limits.requests_remaining == 29 - i
    error = refused(decide(CHAT, KEY, views(policy, windows={"key:key_1": {"rpm": state}}), NOW),
                    RateLimited, "rate_limit_exceeded")
    # the burst's bucket started 0.345 s before NOW: it stops counting 59.655 s from now
    assert error.details["retry_after"] == 60


def test_tpm_counts_tokens_and_skips_calls_without_tokens() -> None:
    policy = {"global": {"tpm": 1000}}
    state = check("tpm", WindowState(), 1000, 800, NOW).state
    error = refused(decide(CHAT, KEY, views(policy, windows={"global": {"tpm": state}}), NOW),
                    RateLimited, "token_rate_limit_exceeded")
    assert "1000 tokens per minute" in error.message
    assert error.details["limit"] == 1000
    no_tokens = Call("stripe", cost_micros=10)
    admit = admitted(decide(no_tokens, KEY, views(policy, windows={"global": {"tpm": state}}),
                            NOW))
    assert admit.windows == {}


def test_admitted_windows_are_returned_for_every_limited_scope() -> None:
    policy = {"key:key_1": {"rpm": 5, "tpm": 10_000}, "global": {"rph": 100}}
    admit = admitted(decide(CHAT, KEY, views(policy), NOW))
    assert set(admit.windows) == {("key:key_1", "rpm"), ("key:key_1", "tpm"), ("global", "rph")}
    assert admit.windows[("key:key_1", "tpm")].used == 400
    assert admit.windows[("global", "rph")].used == 1


def test_a_refusal_on_a_later_scope_writes_nothing() -> None:
    policy = {"key:key_1": {"rpm": 5}, "global": {"rpm": 1}}
    decision = decide(CHAT, KEY, views(policy, windows={"global": {"rpm": full_window("rpm", 1)}}),
                      NOW)
    assert isinstance(decision, Refuse)
    assert decision.scope == "global"


# -- parallel ------------------------------------------------------------------------------

def test_max_parallel() -> None:
    policy = {"agent:bot": {"max_parallel": 2}}
    admit = admitted(decide(CHAT, KEY, views(policy, inflight={"agent:bot": 1}), NOW))
    assert admit.parallel_scopes == ("agent:bot",)
    error = refused(decide(CHAT, KEY, views(policy, inflight={"agent:bot": 2}), NOW),
                    RateLimited, "concurrency_limit_exceeded")
    assert error.details == {"scope": "agent:bot", "limit": 2, "retry_after": 1}
    assert error.headers["Retry-After"] == "1"


# -- budgets -------------------------------------------------------------------------------

def test_budget_exceeded_states_spend_against_cap() -> None:
    policy = {"agent:bot": {"budgets": [{"usd": 50, "period": "month"}]}}
    counters = {"agent:bot": {"month": Counter(MONTH_START, spent=49_999_000, reserved=0)}}
    decision = decide(CHAT, KEY, views(policy, counters=counters), NOW)
    error = refused(decision, BudgetExceeded, "budget_exceeded")
    assert isinstance(decision, Refuse)
    assert decision.scope == "agent:bot"
    assert error.status == 402
    assert error.headers == {"x-should-retry": "false"}
    assert error.details == {
        "scope": "agent:bot", "period": "month", "spent_usd": "49.999", "held_usd": "0",
        "cap_usd": "50", "resets_at": "2024-04-01T00:00:00Z",
    }
    assert "$49.999 spent of a $50 hard cap this month" in error.message
    assert "$0.0015" in error.message


def test_reserved_money_counts_against_the_cap() -> None:
    policy = {"global": {"budgets": [{"usd": 0.01, "period": "day"}]}}
    counters = {"global": {"day": Counter(DAY_START, spent=4_000, reserved=5_000)}}
    error = refused(decide(CHAT, KEY, views(policy, counters=counters), NOW),
                    BudgetExceeded, "budget_exceeded")
    # spent and held apart: what is spent, and what calls in flight hold beside it
    assert (error.details["spent_usd"], error.details["held_usd"]) == ("0.004", "0.005")
    assert "$0.004 spent of a $0.01 hard cap today, $0.005 more held by calls in flight" in (
        error.message)
    assert error.details["resets_at"] == iso(DAY_END)


def test_the_cap_itself_is_reachable_to_the_micro_dollar() -> None:
    policy = {"global": {"budgets": [{"usd": 0.01}]}}
    exact = {"global": {"month": Counter(MONTH_START, spent=8_500)}}
    admit = admitted(decide(CHAT, KEY, views(policy, counters=exact), NOW))
    assert admit.limits.budget_remaining == 0
    over = {"global": {"month": Counter(MONTH_START, spent=8_501)}}
    refused(decide(CHAT, KEY, views(policy, counters=over), NOW), BudgetExceeded,
            "budget_exceeded")


def test_total_budget_never_resets() -> None:
    policy = {"key:key_1": {"budgets": [{"usd": 1, "period": "total"}]}}
    counters = {"key:key_1": {"total": Counter(0, spent=1_000_000)}}
    error = refused(decide(CHAT, KEY, views(policy, counters=counters), NOW), BudgetExceeded,
                    "budget_exceeded")
    assert error.details["resets_at"] is None
    assert "in total" in error.message


def test_a_counter_of_a_past_period_does_not_count() -> None:
    policy = {"global": {"budgets": [{"usd": 1, "period": "month"}]}}
    old = {"global": {"month": Counter(MONTH_START - 1, spent=1_000_000)}}
    admit = admitted(decide(CHAT, KEY, views(policy, counters=old), NOW))
    assert admit.holds == (Hold("global", "month", MONTH_START, 1_500),)


def test_a_soft_budget_lets_calls_through() -> None:
    policy = {"global": {"budgets": [{"usd": 1, "mode": "soft"}]}}
    counters = {"global": {"month": Counter(MONTH_START, spent=5_000_000)}}
    admit = admitted(decide(CHAT, KEY, views(policy, counters=counters), NOW))
    assert admit.holds == (Hold("global", "month", MONTH_START, 1_500),)
    assert admit.limits.budget_cap is None  # headers name hard budgets only


def test_holds_on_every_scope_with_a_budget() -> None:
    policy: dict[str, dict[str, Any]] = {
        scope: {"budgets": [{"usd": 10, "period": "month"}]} for scope in SCOPES}
    policy["agent:bot"] = {"budgets": [{"usd": 10, "period": "month"},
                                       {"usd": 1, "period": "day", "mode": "soft"}]}
    policy["vendor:openai"] = {"rpm": 100}  # no budget: no hold
    admit = admitted(decide(CHAT, KEY, views(policy), NOW))
    assert admit.holds == (
        Hold("key:key_1", "month", MONTH_START, 1_500),
        Hold("agent:bot", "month", MONTH_START, 1_500),
        Hold("agent:bot", "day", DAY_START, 1_500),
        Hold("group:fleet", "month", MONTH_START, 1_500),
        Hold("global", "month", MONTH_START, 1_500),
    )
    # only holds on budgets that warn or are soft are watched for events at settlement
    assert [h.watched for h in admit.holds] == [False, False, True, False, False]


def test_a_hold_is_watched_when_any_budget_of_its_period_warns() -> None:
    policy = {"global": {"budgets": [{"usd": 10, "period": "month"},
                                     {"usd": 20, "period": "month", "warn_at": 0.5}]}}
    (hold,) = admitted(decide(CHAT, KEY, views(policy), NOW)).holds
    assert hold.watched


def test_the_narrowest_exhausted_scope_refuses() -> None:
    policy = {scope: {"budgets": [{"usd": 0.001}]} for scope in SCOPES}
    counters = {"global": {"month": Counter(MONTH_START, spent=0)},
                "group:fleet": {"month": Counter(MONTH_START, spent=1)}}
    decision = decide(Call("stripe", cost_micros=1_000), KEY, views(policy, counters=counters),
                      NOW)
    assert isinstance(decision, Refuse)
    assert decision.scope == "group:fleet"


# -- order and headers ---------------------------------------------------------------------

def test_checks_run_in_order() -> None:
    """allow-lists -> price_unknown -> windows -> max_parallel -> budgets."""
    failing: dict[str, Any] = {
        "vendors": ["stripe"], "models": ["claude-*"], "rpm": 1, "max_parallel": 1,
        "budgets": [{"usd": 0.000001}],
    }
    steps = [  # the call, the refusal it meets, the field then dropped to reach the next check
        (UNPRICED, "vendor_not_allowed", "vendors"),
        (UNPRICED, "model_not_allowed", "models"),
        (UNPRICED, "price_unknown", None),
        (CHAT, "rate_limit_exceeded", "rpm"),
        (CHAT, "concurrency_limit_exceeded", "max_parallel"),
        (CHAT, "budget_exceeded", None),
    ]
    for call, code, dropped in steps:
        decision = decide(call, KEY, views(
            {"global": failing},
            windows={"global": {"rpm": full_window("rpm", 1)}},
            inflight={"global": 1},
            counters={"global": {"month": Counter(MONTH_START, spent=1)}},
        ), NOW)
        assert isinstance(decision, Refuse)
        assert decision.error.code == code
        if dropped:
            del failing[dropped]


def test_limits_report_the_tightest_window_and_hard_budget() -> None:
    policy = {
        "key:key_1": {"rpm": 10, "tpm": 50_000, "budgets": [{"usd": 5}]},
        "agent:bot": {"rph": 100, "budgets": [{"usd": 1, "period": "day", "mode": "soft"}]},
        "global": {"rpm": 1000, "tpm": 2_000, "budgets": [{"usd": 100}]},
    }
    key_rpm = full_window("rpm", 7, NOW - 30_000)  # 7 of 10 used half a minute ago
    admit = admitted(decide(CHAT, KEY, views(
        policy, windows={"key:key_1": {"rpm": key_rpm}},
        counters={"key:key_1": {"month": Counter(MONTH_START, spent=4_000_000)}}), NOW))
    limits = admit.limits
    assert (limits.requests_window, limits.requests_limit, limits.requests_remaining) == (
        "rpm", 10, 2)
    assert limits.requests_reset_ms == (NOW - 30_000) // 1000 * 1000 + 60_000
    assert (limits.tokens_limit, limits.tokens_remaining) == (2_000, 1_600)
    assert (limits.budget_cap, limits.budget_remaining) == (5_000_000, 998_500)


@pytest.mark.parametrize(
    ("policy", "window"),
    [({"rpm": 5, "rph": 5}, "rpm"), ({"rpm": 6, "rph": 5}, "rph"), ({"rpd": 2, "rph": 3}, "rpd")],
)
def test_limits_name_the_tightest_request_window(policy: dict[str, int], window: str) -> None:
    admit = admitted(decide(CHAT, KEY, views({"agent:bot": policy}), NOW))
    assert admit.limits.requests_window == window
    assert admit.limits.requests_limit == policy[window]


def test_no_policies_admit_with_no_limits() -> None:
    admit = admitted(decide(CHAT, KEY, views({}), NOW))
    assert admit.windows == {}
    assert admit.holds == ()
    assert admit.parallel_scopes == ()
    assert admit.limits == Limits()
