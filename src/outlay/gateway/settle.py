"""Settling a reservation exactly once, whichever way a call ends."""

from __future__ import annotations

from typing import Any

from outlay.gateway.context import Gateway
from outlay.gateway.llm_routes import Route
from outlay.pricing.estimate import usage_cost
from outlay.pricing.table import ModelPrice
from outlay.state.base import Outcome, Reservation, Settled, StateError, charged


class Settler:
    """Settles one reservation exactly once, whichever way the call ends."""

    def __init__(
        self, gw: Gateway, reservation: Reservation, route: Route, price: ModelPrice | None,
        *, wait: bool = True,
    ) -> None:
        self.gw, self.reservation, self.route, self.price_of = gw, reservation, route, price
        # False: queue the settlement and return (an answer already sent needs nothing from
        # it; the money stays held until it is applied, a few milliseconds at most)
        self.wait = wait
        self.done = False

    def price(self, usage: dict[str, Any] | None) -> tuple[Settled, int, int]:
        """What the reported usage costs: (settlement, cost, tokens). No usage reported
        means the whole reservation is charged."""
        if usage is None:
            return "unsettled", 0, 0
        tokens, cost = usage_cost(self.route.kind, usage, self.price_of)
        # a model without a price may pass when no hard budget applies; it is recorded at 0
        return "settled", cost or 0, tokens

    async def finish(self, status: int, settled: Settled, cost: int = 0, tokens: int = 0) -> None:
        if self.done:
            return
        self.done = True
        outcome = Outcome(self.reservation.id, status, cost, tokens, settled)
        self.gw.metrics.settled(self.route.provider,
                                self.price_of.name if self.price_of else "", settled,
                                charged(settled, cost, self.reservation.amount))
        if not self.wait and self.gw.store.queue_settlement(outcome):
            # calls waiting for room ask again: their decisions come after this settlement
            self.gw.holds.settled()
            return
        try:
            await self.gw.store.settle(outcome)
        except StateError:
            # the reservation stays held and the reaper charges it in full after its lease
            return
        self.gw.holds.settled()
