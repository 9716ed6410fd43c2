"""Stripe calls that move money out of the account: refunds, transfers and payouts.

Each is priced by its `amount` (smallest currency unit) in its `currency`, converted to USD,
as flow `out`: only money-out budgets (`flow: out`) count it, never spend budgets. A refund
moves its charge's currency, whatever `currency` it names: the gateway reads the charge (or
payment intent) first (`refund_read`) and prices the refund in the currency Stripe reports,
and the whole refundable remainder for a refund without an `amount`; unread, a refund's
amount is bounded by the currency whose smallest unit is dearest, and one without an amount
is unpriced (a hard money-out budget refuses it). Each settles at what Stripe's answer says
moved. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outlay.policy.errors import invalid_request
from outlay.vendors.base import VendorCall, VendorEstimate, printable, route_path
from outlay.vendors.bodies import Fields
from outlay.vendors.stripe_objects import _currency_field, _idempotency_key, amount_field

# the routes that create a movement of money out of the account, by what they create
ROUTES = {"/v1/refunds": "refund", "/v1/transfers": "transfer", "/v1/payouts": "payout"}
_CHARGE_REFUND = re.compile(r"/v1/charges/[^/]+/refunds?")
_ID = re.compile(r"[A-Za-z0-9_]{1,255}")  # Stripe's object ids
_EXPAND_CHARGE = "expand%5B%5D=latest_charge"  # what the payment intent's charge refunded

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
    """The reservation of a money-out call: its amount in USD, as flow `out`. A refund moves
    its charge's currency, whatever `currency` it names (Stripe refunds a charge in its own),
    so until the charge is read (`refund_read`) its amount is bounded by the currency whose
    smallest unit is dearest."""
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
    if kind == "refund":
        return VendorEstimate(usd(amount, None), call.body, idem,
                              f"{where}: refund {amount} in its charge's currency", flow="out")
    return VendorEstimate(usd(amount, code), call.body, idem,
                          f"{where}: {kind} {amount} {code}", flow="out")


def actual(kind: str, status: int, answer: bytes, usd: Usd, call: VendorCall,
           before: int | None) -> int | None:
    """What Stripe's answer says moved out, in micro-USD: the created object's amount in its
    currency; for a refund by `POST /v1/charges/{id}/refund`, which answers with the charge,
    the amount the call named, else what the charge had refunded more than `before` (what
    it had refunded when read before the call; unread: all it has refunded). None when the
    answer is neither (then settled at the reservation)."""
    if not 200 <= status < 300 or (found := _with_currency(answer)) is None:
        return None
    data, code = found
    if data.get("object") == kind:
        amount = _count(data, "amount", None)
        return None if amount is None else usd(amount, code)
    if kind != "refund" or data.get("object") != "charge":
        return None
    refunded = _count(data, "amount_refunded", None)
    if refunded is None:
        return None
    named = amount_field(Fields.of(call, "form").get("amount"), "amount")
    if named is not None:  # Stripe refunds exactly the amount named, or nothing
        return usd(min(named, refunded), code)
    return usd(refunded if before is None else max(0, refunded - before), code)


@dataclass(frozen=True)
class RefundRead:
    """The read, before a refund, of what it refunds (`GET /v1/charges/{id}`, or
    `GET /v1/payment_intents/{id}` with its latest charge expanded), on the call's account."""

    path: str
    query: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Refundable:
    """What Stripe reported of a charge (or payment intent) before a refund of it."""

    currency: str  # the currency every refund of it moves
    remainder: int  # what it can still refund, in that currency's smallest unit
    refunded: int | None  # what its charge had refunded, when Stripe said


def refund_read(call: VendorCall) -> RefundRead | None:
    """For a refund: the read of what it refunds, whose answer says the currency it moves
    and the refundable remainder; None for any other call, one naming no valid object, or
    one naming two (a charge and a payment intent, or a charge's route and a body naming
    either), which could be read as one and refunded as the other."""
    if kind_of(call) != "refund":
        return None
    fields = Fields.of(call, "form")
    path = printable(route_path(call.path)).lower().rstrip("/")
    charge, intent = fields.get("charge"), fields.get("payment_intent")
    if _CHARGE_REFUND.fullmatch(path):
        if charge is not None or intent is not None:
            return None
        charge = route_path(call.path).split("/")[3]
    elif charge is not None and intent is not None:
        return None
    headers = tuple((name, value) for name, value in (
        ("Stripe-Account", call.headers.get("stripe-account", "").strip()),
        ("Stripe-Context", call.headers.get("stripe-context", "").strip())) if value)
    if isinstance(charge, str) and _ID.fullmatch(charge):
        return RefundRead(f"/v1/charges/{charge}", "", headers)
    if isinstance(intent, str) and _ID.fullmatch(intent):
        return RefundRead(f"/v1/payment_intents/{intent}", _EXPAND_CHARGE, headers)
    return None


def refundable(answer: bytes) -> Refundable | None:
    """What the charge or payment intent Stripe answered with can still refund: a charge's
    captured amount (or its amount) less what was refunded of it; a payment intent's
    `amount_received`, less what its latest charge refunded when the answer expands it.
    None when the answer is neither."""
    if (found := _with_currency(answer)) is None:
        return None
    data, currency = found
    if data.get("object") == "charge":
        moved = _count(data, "amount_captured" if data.get("captured") is True else "amount")
        refunded = _count(data, "amount_refunded")
        if moved is None or refunded is None:
            return None
        return Refundable(currency, max(0, moved - refunded), refunded)
    if data.get("object") == "payment_intent":
        received = _count(data, "amount_received")
        if received is None:
            return None
        latest = data.get("latest_charge")
        refunded = _count(latest, "amount_refunded", None) if isinstance(latest, dict) else None
        return Refundable(currency, max(0, received - (refunded or 0)), refunded)
    return None


def priced(call: VendorCall, seen: Refundable, usd: Usd) -> int:
    """A refund's reservation once its charge is read: the amount it names (else the whole
    remainder) in the charge's currency."""
    named = amount_field(Fields.of(call, "form").get("amount"), "amount")
    return usd(seen.remainder if named is None else named, seen.currency)


def _count(data: object, name: str, default: int | None = 0) -> int | None:
    """A non-negative integer field of a Stripe object (`default` when absent), else None."""
    value = data.get(name, default) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _with_currency(answer: bytes) -> tuple[dict[str, Any], str] | None:
    """The Stripe object an answer holds and its currency (lowercase); None when the answer
    is not a JSON object naming one."""
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("currency"), str):
        return None
    return data, data["currency"].lower()
