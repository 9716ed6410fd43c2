"""Choosing the pricing of a vendor from its section of the config (SPEC §9 `vendors:`).

Every vendor call is priced, known to move no money, or has no known price, asked in this
order: the vendor's `rules`; then, for a built-in vendor, its catalogue (vendors.catalogue):
an endpoint it prices goes to the vendor's own pricing, one that moves no money is free;
anything else is unpriced (`cost_micros` None), which a hard budget refuses as
`price_unknown`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from outlay.vendors.base import VendorCall, VendorEstimate, VendorPricing, free, unpriced
from outlay.vendors.catalogue import Endpoint, catalogue, find
from outlay.vendors.objects import ObjectCall, ObjectPricing, ObjectSeen
from outlay.vendors.resend import ResendPricing
from outlay.vendors.rules import RulePricing
from outlay.vendors.stripe import StripePricing
from outlay.vendors.stripe_out import RefundRead
from outlay.vendors.twilio import TwilioPricing

BUILTIN_VENDORS = ("stripe", "twilio", "resend")


class CataloguedPricing:
    """One vendor's pricing: its rules, then its catalogue, else no price."""

    def __init__(self, rules: RulePricing, endpoints: Sequence[Endpoint],
                 builtin: VendorPricing | None) -> None:
        self._rules = rules
        self._endpoints = tuple(endpoints)
        self._builtin = builtin

    def _priced_by_builtin(self, call: VendorCall) -> VendorPricing | None:
        """The built-in pricing when the catalogue says it prices `call` and no rule does."""
        if self._builtin is None or self._rules.match(call) is not None:
            return None
        endpoint = find(self._endpoints, call)
        return self._builtin if endpoint is not None and endpoint.how is not None else None

    def estimate(self, call: VendorCall) -> VendorEstimate:
        ruled = self._rules.match(call)
        if ruled is not None:
            return ruled
        endpoint = find(self._endpoints, call)
        if endpoint is None:
            return unpriced(call)
        if endpoint.how is None or self._builtin is None:
            return free(call, "moves no money")
        return self._builtin.estimate(call)

    def actual(
        self, call: VendorCall, status: int, response_body: bytes, estimate: VendorEstimate
    ) -> int | None:
        builtin = self._priced_by_builtin(call)
        return None if builtin is None else builtin.actual(call, status, response_body, estimate)

    # -- a refund: what it refunds, read from the vendor first ----------------------------
    def refund_read(self, call: VendorCall) -> RefundRead | None:
        builtin = self._priced_by_builtin(call)
        return builtin.refund_read(call) if isinstance(builtin, StripePricing) else None

    def refund_priced(self, call: VendorCall, estimate: VendorEstimate, answer: bytes
                      ) -> VendorEstimate:
        builtin = self._priced_by_builtin(call)
        return (builtin.refund_priced(call, estimate, answer)
                if isinstance(builtin, StripePricing) else estimate)

    # -- payment objects, priced by the vendor's own pricing (Stripe) --------------------
    def object_call(self, call: VendorCall) -> ObjectCall | None:
        builtin = self._priced_by_builtin(call)
        return builtin.object_call(call) if isinstance(builtin, ObjectPricing) else None

    def seen(self, call: ObjectCall, answer: bytes) -> ObjectSeen | None:
        return self._objects().seen(call, answer)

    def target(self, call: ObjectCall, state: str | None) -> int:
        return self._objects().target(call, state)

    def _objects(self) -> ObjectPricing:
        if not isinstance(self._builtin, ObjectPricing):
            raise TypeError("this vendor has no payment objects")  # object_call said none
        return self._builtin


def pricing_for(vendor: str, config: Mapping[str, Any]) -> CataloguedPricing:
    """The pricing of `vendor` given its config section (base_url, secrets and pricing keys).

    Any vendor may have `rules`; Stripe reads `fx`, Twilio `sms_prices`, `default_sms_price`
    and `mms_prices`, Resend `usd_per_email`. Keys that belong to the gateway (base_url,
    credentials) are left alone. Raises ValueError naming the bad setting.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"vendors.{vendor}: expected a mapping, got {type(config).__name__}")
    if not isinstance(vendor, str) or not vendor:
        raise ValueError(f"vendors: a vendor name must be a non-empty string, got {vendor!r}")
    rules = RulePricing.from_config(vendor, config)
    builtin: VendorPricing | None = None
    if vendor == "stripe":
        builtin = StripePricing.from_config(config)
    elif vendor == "twilio":
        builtin = TwilioPricing.from_config(config)
    elif vendor == "resend":
        builtin = ResendPricing.from_config(config)
    return CataloguedPricing(rules, catalogue().get(vendor, ()), builtin)
