"""The simulated Stripe's money out: refunds, transfers and payouts, created and kept in memory.

A refund names a `charge` or a `payment_intent` (whose latest charge it refunds); it moves
money in the charge's currency, whatever `currency` the call names, as Stripe refunds a
charge. Without an `amount` it refunds the charge's whole refundable remainder (a charge the
simulator made: one it does not know is refused, as Stripe refuses it). A transfer names its
`destination`; a payout moves to the account's bank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from outlay.simulator.common import SimContext
from outlay.simulator.stripe_params import (
    StripeError,
    param_amount,
    param_currency,
    param_metadata,
    param_string,
)

__all__ = ["ROUTES", "MoneyOut"]

_PREFIXES = {"refund": "re_", "transfer": "tr_", "payout": "po_"}
ROUTES = {"/v1/refunds": "refund", "/v1/transfers": "transfer", "/v1/payouts": "payout"}

Charge = Callable[[str], dict[str, Any]]  # a charge the simulator made, or a 400
Known = Callable[[str], dict[str, Any] | None]  # a charge the simulator made, or None
Latest = Callable[[str], str | None]  # the latest charge of a payment intent it made, or None


class MoneyOut:
    def __init__(self, ctx: SimContext, charge: Charge, known: Known, latest: Latest) -> None:
        self._ctx = ctx
        self._charge = charge
        self._known = known
        self._latest = latest
        self.made: dict[str, dict[str, Any]] = {}

    def create(self, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
        made = {"refund": self._refund, "transfer": self._transfer,
                "payout": self._payout}[kind](params)
        object_id = self._ctx.new_id(_PREFIXES[kind])
        made = {"id": object_id, "object": kind, **made, "created": self._ctx.now(),
                "metadata": param_metadata(params)}
        self.made[object_id] = made
        return made

    def _refund(self, params: Mapping[str, Any]) -> dict[str, Any]:
        charge = param_string(params, "charge")
        intent = param_string(params, "payment_intent")
        if charge is None and intent is None:
            raise StripeError(400, "One of the following params should be provided for this "
                              "request: payment_intent or charge.", code="parameter_missing")
        paid = charge if charge is not None else self._latest(str(intent))
        made = self._known(paid) if paid is not None else None
        if "amount" in params:
            amount = param_amount(params)
            currency = (str(made["currency"]) if made is not None
                        else param_currency(params) if params.get("currency") else "usd")
        else:
            if paid is None:
                raise StripeError(400, "Missing required param: amount.", param="amount",
                                  code="parameter_missing")
            known = self._charge(paid)
            amount = int(known["amount"]) - int(known.get("amount_refunded") or 0)
            currency = str(known["currency"])
        charge = paid
        if made is not None:  # a charge the simulator made: what is left to refund
            left = int(made["amount"]) - int(made.get("amount_refunded") or 0)
            if amount > left or left == 0:
                raise StripeError(400, f"Charge {charge} has already been refunded."
                                  if left == 0 else f"Refund amount ({amount}) is greater "
                                  f"than unrefunded amount on charge ({left})",
                                  param="amount", code="charge_already_refunded"
                                  if left == 0 else "amount_too_large")
            made.update(amount_refunded=int(made.get("amount_refunded") or 0) + amount,
                        refunded=amount == left)
        return {"amount": amount, "currency": currency, "charge": charge,
                "payment_intent": intent, "status": "succeeded",
                "reason": param_string(params, "reason")}

    def _transfer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        destination = param_string(params, "destination")
        if destination is None:
            raise StripeError(400, "Missing required param: destination.",
                              param="destination", code="parameter_missing")
        return {"amount": param_amount(params), "currency": param_currency(params),
                "destination": destination, "reversed": False}

    def _payout(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"amount": param_amount(params), "currency": param_currency(params),
                "status": "pending", "method": param_string(params, "method") or "standard"}
