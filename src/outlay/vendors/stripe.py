"""Stripe: a payment costs its `amount` (smallest currency unit) in `currency`, converted to USD.

Payment intents and charges are counted by exposure (vendors.stripe_objects): a call on one
costs the change it makes to what the object has moved or can still move. Refunds, transfers
and payouts move money out of the account (vendors.stripe_out): flow `out`, counted by
money-out budgets only. Everything else moves none (SPEC §3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from typing import Any

import yaml

from outlay.policy.errors import invalid_request
from outlay.vendors import stripe_objects, stripe_out
from outlay.vendors.base import (
    VendorCall,
    VendorEstimate,
    config_section,
    config_usd,
    exact_micros,
    free,
)
from outlay.vendors.objects import ObjectCall, ObjectSeen

_CURRENCY = re.compile(r"[a-z]{3}")


class StripePricing:
    """Prices Stripe calls with a USD rate per currency and Stripe's decimals per currency."""

    def __init__(self, usd_per_unit: Mapping[str, Decimal], decimals: Mapping[str, int]) -> None:
        self._usd_per_unit = dict(usd_per_unit)
        self._decimals = dict(decimals)
        # When a capture names an amount but not its currency (Stripe takes it from the intent),
        # the most it can be worth is the amount in the currency whose smallest unit is dearest.
        self._dearest = max(self._usd_per_unit, key=self._usd_per_minor_unit)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripePricing:
        """The shipped fx.yaml with `fx:` from the vendor's config section applied."""
        shipped = yaml.safe_load(files("outlay.vendors").joinpath("fx.yaml").read_text("utf-8"))
        decimals = dict.fromkeys(shipped["zero_decimal"], 0)
        decimals.update(dict.fromkeys(shipped["three_decimal"], 3))
        rates = {
            code: config_usd(rate, f"fx.yaml rates.{code}", positive=True)
            for code, rate in shipped["rates"].items()
        }
        for code, rate in config_section(config, "fx", "vendors.stripe").items():
            where = f"vendors.stripe.fx.{code}"
            if not isinstance(code, str) or not _CURRENCY.fullmatch(code.lower()):
                raise ValueError(f"{where}: expected a three-letter currency code")
            rates[code.lower()] = config_usd(rate, where, positive=True)
        return cls(rates, decimals)

    def estimate(self, call: VendorCall) -> VendorEstimate:
        kind = stripe_out.kind_of(call)
        if kind is not None:
            return stripe_out.estimate(call, kind, self.usd, self._known_currency)
        return free(call, "moves no money")

    def actual(
        self, call: VendorCall, status: int, response_body: bytes, estimate: VendorEstimate
    ) -> int | None:
        kind = stripe_out.kind_of(call)
        if kind is not None:  # what moved out, as Stripe's answer says
            return stripe_out.actual(kind, status, response_body, self.usd, call,
                                     estimate.refunded_before)
        return None  # what moves is counted on the objects (object_call), not here

    # -- a refund: what it refunds, read from Stripe first (gateway.vendor_remainder) ----
    def refund_read(self, call: VendorCall) -> stripe_out.RefundRead | None:
        return stripe_out.refund_read(call)

    def refund_priced(self, call: VendorCall, estimate: VendorEstimate, answer: bytes
                      ) -> VendorEstimate:
        """`estimate` priced as Stripe's read of the refunded charge says: the amount in the
        charge's currency, or its whole remainder; unchanged when the answer says neither."""
        seen = stripe_out.refundable(answer)
        if seen is None:
            return estimate
        return replace(estimate, cost_micros=stripe_out.priced(call, seen, self.usd),
                       refunded_before=seen.refunded,
                       describe=f"{estimate.describe} (in {seen.currency}, as Stripe reports "
                       "the charge)")

    def _known_currency(self, value: object) -> str:
        code = self._currency(value, required=True)
        assert code is not None
        return code

    # -- payment intents and charges, counted by exposure --------------------------------
    def object_call(self, call: VendorCall) -> ObjectCall | None:
        if stripe_out.kind_of(call) is not None:
            return None  # a refund by a charge's route: money out, priced by `estimate`
        found = stripe_objects.object_call(call)
        if found is not None and (found.currency is not None or found.action == "create"):
            self._currency(found.currency, required=found.action == "create")
        return found

    def seen(self, call: ObjectCall, answer: bytes) -> ObjectSeen | None:
        return stripe_objects.seen(call, answer, self.usd)

    def target(self, call: ObjectCall, state: str | None) -> int:
        return stripe_objects.target(call, state, self.usd)

    def usd(self, amount: int, currency: str | None) -> int:
        """Micro-USD of `amount` in `currency`; an unknown or unnamed currency is bounded
        by the currency whose smallest unit is dearest."""
        known = currency if currency in self._usd_per_unit else self._dearest
        return self._usd_micros(amount, known)

    def _currency(self, value: object, *, required: bool) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value.lower()):
            raise invalid_request(
                f"`currency` is required: a three-letter ISO code such as usd, got {value!r}.",
                "currency",
            )
        code = value.lower()
        if code not in self._usd_per_unit:
            raise invalid_request(
                f"Unknown currency {code!r}: Outlay has no USD rate for it "
                "(an operator can add one under vendors.stripe.fx).",
                "currency",
            )
        return code

    def _usd_per_minor_unit(self, code: str) -> Fraction:
        minor_units: int = 10 ** self._decimals.get(code, 2)  # per whole unit
        return Fraction(self._usd_per_unit[code]) / minor_units

    def _usd_micros(self, amount: int, code: str) -> int:
        return exact_micros(amount, self._usd_per_minor_unit(code))
