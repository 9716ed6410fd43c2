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
_ID = re.compile(r"[A-Za-z0-9_]{1,255}")  # Stripe's object ids

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


def remainder_read(call: VendorCall) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """For a refund naming no `amount`: the read of what it refunds (`GET /v1/charges/{id}`
    or `GET /v1/payment_intents/{id}`, with the call's `Stripe-Account`), whose answer says
    the refundable remainder; None for any other call, or one naming no valid object."""
    if kind_of(call) != "refund":
        return None
    fields = Fields.of(call, "form")
    if fields.get("amount") is not None:
        return None
    path = printable(route_path(call.path)).lower().rstrip("/")
    legacy = _CHARGE_REFUND.fullmatch(path)
    charge = (route_path(call.path).split("/")[3] if legacy
              else fields.get("charge"))
    intent = None if legacy else fields.get("payment_intent")
    account = call.headers.get("stripe-account", "").strip()
    headers = (("Stripe-Account", account),) if account else ()
    if isinstance(charge, str) and _ID.fullmatch(charge):
        return f"/v1/charges/{charge}", headers
    if charge is None and isinstance(intent, str) and _ID.fullmatch(intent):
        return f"/v1/payment_intents/{intent}", headers
    return None


def remainder(answer: bytes, usd: Usd) -> int | None:
    """What a refund of the whole remainder moves, in micro-USD, from the charge or payment
    intent Stripe answered with: a charge's captured amount (or its amount) less what was
    refunded of it; a payment intent's `amount_received` (at most what it can refund). None
    when the answer is neither."""
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("currency"), str):
        return None
    currency = str(data["currency"]).lower()

    def count(name: str) -> int | None:
        value = data.get(name, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
            else None

    if data.get("object") == "charge":
        moved = count("amount_captured") if data.get("captured") is True else count("amount")
        refunded = count("amount_refunded")
        if moved is None or refunded is None:
            return None
        return usd(max(0, moved - refunded), currency)
    if data.get("object") == "payment_intent":
        received = count("amount_received")
        return None if received is None else usd(received, currency)
    return None
