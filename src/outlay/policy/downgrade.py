"""Degrade instead of refuse: a call a hard budget would refuse is sent to a cheaper model
its `on_exceeded.downgrade_to` names, the first that fits every limit. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from outlay.policy.decision import Admit, Call, Decision, Event, KeyInfo, Refuse
from outlay.policy.periods import period_bounds


def pick(refusal: Refuse, asked: Call, alternatives: Mapping[str, Call],
         decide_again: Callable[[Call], Decision]) -> tuple[Call, Admit] | None:
    """The first model of the refusal's downgrade list that costs less than the call asked
    and is admitted, with its decision; None when none fits (the call is refused)."""
    if asked.cost_micros is None:
        return None
    for model in refusal.downgrade:
        call = alternatives.get(model)
        if call is None or call.cost_micros is None or call.cost_micros >= asked.cost_micros:
            continue
        decision = decide_again(call)
        if isinstance(decision, Admit):
            return call, decision
    return None


def downgraded_event(refusal: Refuse, key: KeyInfo, asked: Call, sent: Call,
                     now_ms: int) -> Event:
    """`budget.downgraded`, announced once per scope and budget period."""
    details = refusal.error.details
    period = str(details.get("period", "total"))
    start = period_bounds(period, now_ms)[0]  # type: ignore[arg-type]
    return Event("budget.downgraded", {
        "scope": refusal.scope, "agent_id": key.agent, "key_id": key.id, "period": period,
        "from_model": asked.model, "to_model": sent.model,
        "spent_usd": details.get("spent_usd"), "cap_usd": details.get("cap_usd"),
    }, f"budget.downgraded:{refusal.scope}:{period}:{start}")
