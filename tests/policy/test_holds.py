"""402 only when spend itself leaves no room: a call that fits a hard budget's settled spend
but not beside other calls' reservations may wait for them (`hold_wait_ms`), and one that
cannot fit even the settled spend is refused at once."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.decide import decide
from outlay.policy.decision import Counter, Grant, Refuse
from outlay.policy.errors import BudgetExceeded, RateLimited
from outlay.policy.model import DEFAULT_HOLD_WAIT_MS, PolicyError, parse_policy

from .test_decide import CHAT, DAY_START, KEY, NOW, admitted, full_window, refused, views

CAP = {"budgets": [{"usd": 0.01, "period": "day", "mode": "hard"}]}  # CHAT may cost 1,500
HELD = {"day": Counter(DAY_START, spent=8_000, reserved=1_000)}  # fits 10,000 settled only
FULL = {"day": Counter(DAY_START, spent=9_000, reserved=0)}  # no room even settled


def held(decision: object) -> Refuse:
    assert isinstance(decision, Refuse), decision
    assert decision.hold_ms is not None, decision
    return decision


def test_a_call_that_fits_settled_spend_may_wait_for_the_calls_in_flight() -> None:
    decision = held(decide(CHAT, KEY, views({"agent:bot": CAP}, counters={"agent:bot": HELD}),
                           NOW, may_wait=True))
    assert decision.hold_ms == DEFAULT_HOLD_WAIT_MS == 2_000
    assert decision.events == ()  # nothing is announced: not refused yet
    assert decision.approval is None
    assert isinstance(decision.error, BudgetExceeded)
    assert (decision.error.details["spent_usd"], decision.error.details["held_usd"]) == (
        "0.008", "0.001")


def test_without_waiting_it_is_refused_as_ever() -> None:
    decision = decide(CHAT, KEY, views({"agent:bot": CAP}, counters={"agent:bot": HELD}), NOW)
    refused(decision, BudgetExceeded, "budget_exceeded")
    assert decision.hold_ms is None  # type: ignore[union-attr]
    assert [e.type for e in decision.events] == ["budget.exceeded"]  # type: ignore[union-attr]


def test_a_call_settled_spend_has_no_room_for_is_refused_at_once() -> None:
    decision = decide(CHAT, KEY, views({"agent:bot": CAP}, counters={"agent:bot": FULL}), NOW,
                      may_wait=True)
    error = refused(decision, BudgetExceeded, "budget_exceeded")
    assert decision.hold_ms is None  # type: ignore[union-attr]
    assert (error.details["spent_usd"], error.details["held_usd"]) == ("0.009", "0")


def test_hold_wait_ms_is_per_policy_and_the_shortest_wins() -> None:
    policies = {"agent:bot": {**CAP, "hold_wait_ms": 500},
                "global": {**CAP, "hold_wait_ms": 300}}
    counters = {"agent:bot": HELD, "global": HELD}
    assert held(decide(CHAT, KEY, views(policies, counters=counters), NOW,
                       may_wait=True)).hold_ms == 300
    never = {"agent:bot": {**CAP, "hold_wait_ms": 0}}
    decision = decide(CHAT, KEY, views(never, counters={"agent:bot": HELD}), NOW,
                      may_wait=True)
    refused(decision, BudgetExceeded, "budget_exceeded")
    assert decision.hold_ms is None  # type: ignore[union-attr]


def test_a_hold_never_outranks_a_refusal() -> None:
    policies: dict[str, dict[str, Any]] = {"agent:bot": CAP,
                                           "global": {**CAP, "rpm": 1}}
    counters = {"agent:bot": HELD, "global": FULL}
    refused(decide(CHAT, KEY, views(policies, counters=counters), NOW, may_wait=True),
            BudgetExceeded, "budget_exceeded")
    rate = decide(CHAT, KEY, views(policies, counters={"agent:bot": HELD},
                                   windows={"global": {"rpm": full_window("rpm", 1)}}), NOW,
                  may_wait=True)
    refused(rate, RateLimited, "rate_limit_exceeded")
    approval = {"agent:bot": CAP, "global": {**CAP, "on_breach": "require_approval"}}
    asked = decide(CHAT, KEY, views(approval, counters=counters), NOW, may_wait=True)
    refused(asked, BudgetExceeded, "budget_exceeded")  # a human decides; no wait
    assert asked.approval is not None  # type: ignore[union-attr]
    assert asked.hold_ms is None  # type: ignore[union-attr]


def test_what_lets_a_breach_through_needs_no_wait() -> None:
    alert = {"agent:bot": {**CAP, "on_breach": "alert"}}
    assert admitted(decide(CHAT, KEY, views(alert, counters={"agent:bot": HELD}), NOW,
                           may_wait=True)).overage
    approval = {"agent:bot": {**CAP, "on_breach": "require_approval"}}
    grant = Grant("apr_0123456789abcdef", frozenset({("agent:bot", "budget_exceeded")}))
    assert admitted(decide(CHAT, KEY, views(approval, counters={"agent:bot": HELD}), NOW,
                           grant=grant, may_wait=True)).approved
    # without an approval it waits first: the calls in flight may leave room
    assert held(decide(CHAT, KEY, views(approval, counters={"agent:bot": HELD}), NOW,
                       may_wait=True)).hold_ms == 2_000


def test_hold_wait_ms_is_stored_as_given() -> None:
    assert parse_policy({"hold_wait_ms": 0}).to_dict()["hold_wait_ms"] == 0
    assert parse_policy({"hold_wait_ms": 600_000}).hold_ms == 600_000
    assert "hold_wait_ms" not in parse_policy({}).to_dict()
    assert parse_policy({}).hold_ms == DEFAULT_HOLD_WAIT_MS


@pytest.mark.parametrize("value", [-1, 1.5, "2000", True, [2000], 600_001])
def test_a_bad_hold_wait_ms_is_refused_naming_it(value: object) -> None:
    with pytest.raises(PolicyError, match="hold_wait_ms"):
        parse_policy({"hold_wait_ms": value})
