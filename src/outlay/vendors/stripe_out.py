"""Stripe calls that move money out of the account: refunds, transfers and payouts.

Each is priced by its `amount` (smallest currency unit) in its `currency`, converted to USD,
as flow `out`: only money-out budgets (`flow: out`) count it, never spend budgets. A refund
names its currency only when the caller says it; otherwise its amount is bounded by the
currency whose smallest unit is dearest, and settled at what Stripe's answer says it moved.
A refund without an `amount` refunds the charge's whole refundable remainder, which is not
known before the call: it is unpriced (a hard money-out budget refuses it). Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from outlay.policy.errors import invalid_request
from outlay.vendors.base import VendorCall, VendorEstimate, printable, route_path
from outlay.vendors.bodies import Fields
from outlay.vendors.stripe_objects import _currency_field, _idempotency_key, amount_field

# the routes that create a movement of money out of the account, by what they create
ROUTES = {"/v1/refunds": "refund", "/v1/transfers": "transfer", "/v1/payouts": "payout"}
_CHARGE_REFUND = re.compile(r"/v1/charges/[^/]+/refunds?")

Usd = Callable[[int, str | None], int]  # micro-USD of an amount in a currency (None: unknown)
Currency = Callable[[object], str]  # a currency the pricing knows, or a refusal


def kind_of(call: VendorCall) -> str | None:
    """`refund`, `transfer` or `payout` when `call` creates one (a refund by Stripe's older
    routes too: /v1/charges/{id}/refund and /v1/charges/{id}/refunds); None otherwise."""
    if call.method.upper() != "POST":
        return None
    path = printable(route_path(call.path)).lower().rstrip("/")
    if _CHARGE_REFUND.fullmatch(path):
        return "refund"
    return ROUTES.get(path)


def estimate(call: VendorCall, kind: str, usd: Usd, currency: Currency) -> VendorEstimate:
    """The reservation of a money-out call: its amount in USD, as flow `out`."""
    fields = Fields.of(call, "form")
    amount = amount_field(fields.get("amount"), "amount")
    named = _currency_field(fields.get("currency"))
    code = currency(named) if named is not None or kind != "refund" else None
    where = f"{call.method} {printable(route_path(call.path))}"
    idem = _idempotency_key(call)
    if amount is None:
        if kind != "refund":
            raise invalid_request(
                f"`amount` is required to create a {kind} (an integer in the currency's "
                "smallest unit).", "amount")
        return VendorEstimate(None, call.body, idem,
                              f"{where}: refund of the whole refundable remainder",
                              flow="out")
    return VendorEstimate(usd(amount, code), call.body, idem,
                          f"{where}: {kind} {amount} {code or ''}".rstrip(), flow="out")


def actual(kind: str, status: int, answer: bytes, usd: Usd) -> int | None:
    """What Stripe's answer says moved out (the created object's amount in its currency);
    None when the answer is not the object (then settled at the reservation)."""
    if not 200 <= status < 300:
        return None
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("object") != kind:
        return None
    amount, code = data.get("amount"), data.get("currency")
    if (not isinstance(amount, int) or isinstance(amount, bool) or amount < 0
            or not isinstance(code, str)):
        return None
    return usd(amount, code.lower())
