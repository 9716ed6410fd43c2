"""Settling a reservation exactly once, whichever way a call ends."""

from __future__ import annotations

from typing import Any

from outlay.gateway.context import Gateway
from outlay.gateway.llm_routes import Route
from outlay.gateway.usage_tap import UsageTap, error_body, usage_of
from outlay.pricing.estimate import Estimate
from outlay.pricing.table import ModelPrice
from outlay.pricing.usage import count, openai_tool_uses, reported_tier, usage_cost
from outlay.state.base import Outcome, Reservation, Settled, StateError, charged, overrun
from outlay.telemetry.spans import noted_settlement, noted_usage

# Tokens a model may write that show no text (end-of-turn and other special tokens)
UNSHOWN_TOKENS = 16


class Settler:
    """Settles one reservation exactly once, whichever way the call ends."""

    def __init__(
        self, gw: Gateway, reservation: Reservation, route: Route, price: ModelPrice | None,
        est: Estimate | None = None, *, wait: bool = True, flow: str = "spend",
    ) -> None:
        self.gw, self.reservation, self.route, self.price_of = gw, reservation, route, price
        self.flow = flow  # spend, or money moved out (metrics count the two apart)
        self.est = est  # the bound: the tier it assumed and the tools' fees
        # False: queue the settlement and return (an answer already sent needs nothing from
        # it; the money stays held until it is applied, a few milliseconds at most)
        self.wait = wait
        self.done = False

    def price(self, usage: dict[str, Any] | None, *, tier: str | None = None,
              tool_uses: dict[str, int] | None = None) -> tuple[Settled, int, int]:
        """What the reported usage costs: (settlement, cost, tokens), at the service tier the
        answer names and with the server-side tools it used. No usage reported means the
        whole reservation is charged."""
        if usage is None:
            return "unsettled", 0, 0
        noted_usage(usage)
        est = self.est
        tokens, cost = usage_cost(
            self.route.kind, usage, self.price_of, tier=tier,
            fallback_tier=est.tier if est else None, tool_uses=tool_uses,
            fees=dict(est.fees) if est and est.fees else None)
        # a model without a price may pass when no hard budget applies; it is recorded at 0
        return "settled", cost or 0, tokens

    def answer(self, document: dict[str, Any] | None, size: int) -> tuple[Settled, int, int]:
        """What a whole 2xx answer of `size` bytes costs, from what it reports; without
        usage, what it can have used (an error body shows no output)."""
        if self.route.kind == "anthropic.count_tokens":
            return "settled", 0, 0  # counting tokens is free, and reports no usage
        usage = None if document is None else usage_of(document)
        if document is None or usage is None:
            # an error body shows no output; any other body at most a token a byte
            shown = 0 if document is not None and error_body(document) else \
                size + UNSHOWN_TOKENS
            return self.cut_short(shown, None, None)
        return self.price(usage, tier=reported_tier(document),
                          tool_uses=self._tool_uses(document))

    def stream(self, tap: UsageTap) -> tuple[Settled, int, int]:
        """What a stream that ran to its end costs, from what its events reported; one that
        ended without usage (an error event mid-way), what it can have used."""
        if not (tap.finished and tap.usage):
            return self.cut_short(tap.output_bytes() + UNSHOWN_TOKENS, tap.usage, tap.tier)
        return self.price(tap.usage, tier=tap.tier,
                          tool_uses=self._tool_uses(tap.response or {}))

    def cut_short(self, shown: int, partial: dict[str, Any] | None, tier: str | None
                  ) -> tuple[Settled, int, int]:
        """A call that ended without reporting its usage is charged what it can have used
        up to then, as an estimate (`settled_estimate`): the input reported (Anthropic's, at
        the stream's start) or its bound, plus the output it showed (`shown`, a bound in
        tokens), never the whole reservation unless its model may have reasoned unseen."""
        est = self.est
        if est is None or est.cost_micros is None:
            return self.price(None)
        output = est.output_tokens if est.hidden_output else min(est.output_tokens, shown)
        if partial and count(partial, "input_tokens") and not est.tools.tools:
            usage = {**partial, "output_tokens": max(count(partial, "output_tokens"), output)}
            _, reported, tokens = self.price(usage, tier=tier)
            return "settled_estimate", reported, tokens
        return "settled_estimate", est.up_to(output) or 0, est.input_tokens + output

    def _tool_uses(self, document: dict[str, Any]) -> dict[str, int] | None:
        if self.route.kind != "openai.responses":
            return None  # Anthropic reports its tools' uses in `usage`
        return openai_tool_uses(document.get("response") or document)

    async def finish(self, status: int, settled: Settled, cost: int = 0, tokens: int = 0) -> None:
        if self.done:
            return
        self.done = True
        outcome = Outcome(self.reservation.id, status, cost, tokens, settled)
        amount = self.reservation.amount
        bill = charged(settled, cost, amount)
        self.gw.metrics.settled(self.route.provider,
                                self.price_of.name if self.price_of else "", settled,
                                bill, overrun(settled, cost, amount), self.flow)
        noted_settlement(status, settled, bill)
        if not self.wait and self.gw.store.queue_settlement(outcome):
            # calls waiting for room ask again: their decisions come after this settlement
            self.gw.holds.settled()
            self.gw.queue.released()
            return
        try:
            await self.gw.store.settle(outcome)
        except StateError:
            # the reservation stays held and the reaper charges it in full after its lease
            return
        self.gw.holds.settled()
        self.gw.queue.released()
