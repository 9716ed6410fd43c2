"""Degrade instead of refuse, as both stores do it inside their decision: a refusal by a
budget with `on_exceeded.downgrade_to` asks the gateway to price the cheaper models
(DowngradeAsked, nothing written), then admits the call on the first one that fits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from outlay.policy.decision import Call, Decision, Event, KeyInfo, Refuse
from outlay.policy.downgrade import downgraded_event, pick
from outlay.policy.errors import DowngradeAsked
from outlay.state.base import Ticket


def downgrade(ticket: Ticket, key: KeyInfo, decision: Decision,
              decide_again: Callable[[Call], Decision], now_ms: int
              ) -> tuple[Ticket, Decision, Event | None]:
    """The ticket and decision as they stand after trying the cheaper models, and the
    `budget.downgraded` event when the call was admitted on one (among the decision's)."""
    if (not isinstance(decision, Refuse) or not decision.downgrade
            or decision.hold_ms is not None):
        return ticket, decision, None
    if ticket.downgrades is None:
        raise DowngradeAsked(decision.error, decision.downgrade)
    found = pick(decision, ticket.call, ticket.downgrades, decide_again)
    if found is None:
        return ticket, decision, None
    call, admit = found
    event = downgraded_event(decision, key, ticket.call, call, now_ms)
    return (replace(ticket, call=call, downgraded_from=ticket.call.model, downgrades={}),
            replace(admit, events=(*admit.events, event)), event)
