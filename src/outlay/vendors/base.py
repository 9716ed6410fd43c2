"""What every vendor's pricing shares: the parsed call, its estimate, and exact money helpers.

Pure: no I/O, no async. A vendor module turns a VendorCall into a VendorEstimate (SPEC §3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Protocol

from outlay.policy.decision import Clamp
from outlay.policy.errors import invalid_request
from outlay.policy.model import Flow
from outlay.policy.money import MICROS_PER_USD
from outlay.policy.vendor_access import path_glob as path_glob
from outlay.policy.vendor_access import route_path as route_path


@dataclass(frozen=True)
class VendorCall:
    """What the gateway parsed from the agent's request to `/vendors/<vendor>/<path>`."""

    vendor: str  # "stripe" | "twilio" | "resend" | a configured name
    method: str  # upper-case
    path: str  # vendor-relative, e.g. "/v1/payment_intents"
    content_type: str  # the Content-Type header as sent, parameters included
    body: bytes
    headers: Mapping[str, str]  # lower-case names


@dataclass(frozen=True)
class VendorEstimate:
    """The reservation for one vendor call and the body to forward."""

    # the most the call can cost; 0 means free and not reserved, None that no price is known
    cost_micros: int | None
    body: bytes  # the body to forward (Twilio gets MaxPrice added)
    idempotency_key: str | None  # a retry with this key reserves once and is charged once
    describe: str  # short text for the ledger, e.g. "sms 2 segments to GB"
    # a call Outlay may send with a lower limit to fit the budgets (a Twilio call's minutes):
    # the cost at each limit, and the body to forward with the limit it was lowered to, with
    # the header that tells the agent so
    clamp: Clamp | None = None
    limited: Callable[[int], tuple[bytes, dict[str, str]]] | None = None
    # spend (what the call costs), or money it moves out of the account (refunds, transfers,
    # payouts): each counts only toward the budgets of its flow
    flow: Flow = "spend"
    # a Stripe refund whose charge was read before the call: what the charge had refunded
    # then, for settling a refund whose answer is the charge (its total refunded after)
    refunded_before: int | None = None


class VendorPricing(Protocol):
    def estimate(self, call: VendorCall) -> VendorEstimate:
        """The reservation for `call`; raises BadRequest for a body that cannot be priced."""
        ...

    def actual(
        self, call: VendorCall, status: int, response_body: bytes, estimate: VendorEstimate
    ) -> int | None:
        """The cost the vendor reported in its answer, or None to settle at the estimate."""
        ...


def free(call: VendorCall, why: str) -> VendorEstimate:
    """An estimate for a call that moves no money: nothing is reserved."""
    return VendorEstimate(
        0, call.body, None, f"{call.method} {printable(route_path(call.path))}: {why}"
    )


def unpriced(call: VendorCall) -> VendorEstimate:
    """An estimate for a call whose price Outlay does not know: a hard budget refuses it."""
    return VendorEstimate(
        None, call.body, None, f"{call.method} {printable(route_path(call.path))}: no price known"
    )


def printable(text: str) -> str:
    """`text` safe for a one-line ledger entry: a decoded path may hold control characters."""
    return "".join(char if char.isprintable() else "?" for char in text)


def exact_micros(*factors: int | Decimal | Fraction) -> int:
    """Micro-USD of a product of USD factors, computed exactly and rounded up once."""
    product = Fraction(MICROS_PER_USD)
    for factor in factors:
        product *= Fraction(factor)
    return math.ceil(product)


def idempotency_key(call: VendorCall, limit: int) -> str | None:
    """The Idempotency-Key header, or None; refused when longer than the vendor accepts."""
    key = call.headers.get("idempotency-key", "").strip()
    if not key:
        return None
    if len(key) > limit:
        raise invalid_request(
            f"`Idempotency-Key` must be at most {limit} characters, got {len(key)}.",
            "Idempotency-Key",
        )
    return key


def config_usd(value: object, where: str, *, positive: bool = False) -> Decimal:
    """A USD amount or rate from config or a data file, exact; raises ValueError naming `where`.

    Floats are read through their shortest repr, so `0.0524` means exactly 0.0524.
    """
    wanted = "a positive number" if positive else "a number >= 0"
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"{where}: expected {wanted}, got {value!r}")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{where}: expected {wanted}, got {value!r}") from None
    if not amount.is_finite() or amount < 0 or (positive and amount == 0):
        raise ValueError(f"{where}: expected {wanted}, got {value!r}")
    if not in_range(amount):
        raise ValueError(f"{where}: {value!r} is out of range")
    return amount


def in_range(number: Decimal) -> bool:
    """Whether a price or quantity is within 1e-18 .. 1e15: exact arithmetic stays cheap.

    Exact fractions of numbers like 1e999999 would take megabytes; no price or billed
    quantity is anywhere near these bounds.
    """
    if not number:
        return True
    normal = number.normalize()
    exponent = normal.as_tuple().exponent
    return normal.adjusted() <= 15 and isinstance(exponent, int) and exponent >= -18


def config_section(config: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    """An optional mapping inside a vendor's config section; {} when absent."""
    section = config.get(key)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{where}.{key}: expected a mapping, got {type(section).__name__}")
    return section
