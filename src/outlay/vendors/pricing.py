"""Choosing the pricing of a vendor from its section of the config (SPEC §9 `vendors:`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.vendors.base import VendorPricing
from outlay.vendors.resend import ResendPricing
from outlay.vendors.rules import RulePricing
from outlay.vendors.stripe import StripePricing
from outlay.vendors.twilio import TwilioPricing

BUILTIN_VENDORS = ("stripe", "twilio", "resend")


def pricing_for(vendor: str, config: Mapping[str, Any]) -> VendorPricing:
    """The pricing of `vendor` given its config section (base_url, secrets and pricing keys).

    Stripe reads `fx`, Twilio `sms_prices`, `default_sms_price` and `mms_prices`, Resend
    `usd_per_email`; any other vendor is priced by its `rules`. Keys that belong to the
    gateway (base_url, credentials) are left alone. Raises ValueError naming the bad setting.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"vendors.{vendor}: expected a mapping, got {type(config).__name__}")
    if vendor in BUILTIN_VENDORS:
        if "rules" in config:
            raise ValueError(
                f"vendors.{vendor}.rules: Outlay prices {vendor} calls from their requests; "
                "rules apply only to vendors it does not know"
            )
        if vendor == "stripe":
            return StripePricing.from_config(config)
        if vendor == "twilio":
            return TwilioPricing.from_config(config)
        return ResendPricing.from_config(config)
    if not isinstance(vendor, str) or not vendor:
        raise ValueError(f"vendors: a vendor name must be a non-empty string, got {vendor!r}")
    return RulePricing.from_config(vendor, config)
