"""The budget events a settlement raises, judged per counter: a money-out budget's apart
from the spend budget of the same period."""

from __future__ import annotations

from outlay.policy.decision import KeyInfo
from outlay.policy.model import parse_policy
from outlay.state.announcements import settlement_events

KEY = KeyInfo("key_1", "bot", None, {})
POLICY = parse_policy({"budgets": [
    {"usd": 10, "period": "day", "mode": "soft", "warn_at": 0.5},
    {"usd": 50, "period": "day", "mode": "soft", "warn_at": 0.5, "flow": "out"}]})


def test_money_out_settlements_announce_the_money_out_budget_with_its_flow() -> None:
    events = settlement_events("agent:bot", POLICY, "day-out", 0, 60_000_000, KEY)
    assert [(e.type, e.data["flow"], e.data["cap_usd"]) for e in events] == [
        ("budget.warning", "out", "50"), ("budget.exceeded", "out", "50")]
    assert all(e.coalesce.endswith("agent:bot:day-out:0") for e in events)


def test_spend_settlements_announce_the_spend_budget_without_a_flow() -> None:
    events = settlement_events("agent:bot", POLICY, "day", 0, 6_000_000, KEY)
    assert [(e.type, e.data["cap_usd"]) for e in events] == [("budget.warning", "10")]
    assert "flow" not in events[0].data
