"""Stripe: a payment costs its `amount` (smallest currency unit) in `currency`, converted to USD.

Priced: creating a payment intent or a charge, and confirming or capturing one when the call
names an amount. Refunds bring money back and everything else moves none (SPEC §3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from typing import Any

import yaml

from outlay.policy.errors import invalid_request
from outlay.vendors.base import (
    VendorCall,
    VendorEstimate,
    config_section,
    config_usd,
    exact_micros,
    free,
    idempotency_key,
    printable,
    route_path,
)
from outlay.vendors.bodies import Fields

_CURRENCY = re.compile(r"[a-z]{3}")
_INTEGER = re.compile(r"-?[0-9]+")
# Stripe's largest amounts have 12 digits; more than this is not a payment but a typo or a probe.
_MAX_AMOUNT_DIGITS = 15
# Stripe accepts idempotency keys of up to 255 characters.
_IDEMPOTENCY_KEY_LIMIT = 255


@dataclass(frozen=True)
class _Action:
    """A priced (or deliberately free) Stripe endpoint, recognised from method and path."""

    kind: str  # "create" | "confirm" | "capture" | "refund"
    obj: str  # "payment_intent" | "charge" | "refund"
    obj_id: str | None
    amount_field: str  # the request field that carries the amount
    reported_field: str  # the field of the returned object that says what moved


def _action(call: VendorCall) -> _Action | None:
    if call.method.upper() != "POST":
        return None
    parts = printable(route_path(call.path)).split("/")[1:]
    lowered = [part.lower() for part in parts]
    match lowered:
        case ["v1", "payment_intents"]:
            return _Action("create", "payment_intent", None, "amount", "amount")
        case ["v1", "charges"]:
            return _Action("create", "charge", None, "amount", "amount")
        case ["v1", "payment_intents", _, "confirm"]:
            return _Action("confirm", "payment_intent", parts[2], "amount", "amount")
        case ["v1", "payment_intents", _, "capture"]:
            return _Action(
                "capture", "payment_intent", parts[2], "amount_to_capture", "amount_received"
            )
        case ["v1", "charges", _, "capture"]:
            return _Action("capture", "charge", parts[2], "amount", "amount_captured")
        case ["v1", "refunds"]:
            return _Action("refund", "refund", None, "amount", "amount")
    return None


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
        action = _action(call)
        if action is None:
            return free(call, "moves no money")
        if action.kind == "refund":
            return free(call, "refund, money comes back")
        fields = Fields.of(call, "form")
        amount = _amount(fields.get(action.amount_field), action.amount_field)
        if amount is None:
            if action.kind == "create":
                raise invalid_request(
                    f"`amount` is required to create a {action.obj} (an integer in the "
                    "currency's smallest unit).",
                    "amount",
                )
            return free(call, "no amount given, not reserved here")
        currency = self._currency(fields.get("currency"), required=action.kind == "create")
        if currency is None:
            cost = self._usd_micros(amount, self._dearest)
            what = f"{action.obj} {action.kind} {action.obj_id} {amount} (currency of the intent"
            describe = f"{what}, bounded at {self._dearest})"
        else:
            cost = self._usd_micros(amount, currency)
            verb = "" if action.kind == "create" else f" {action.kind} {action.obj_id}"
            describe = f"{action.obj}{verb} {amount} {currency}"
        key = idempotency_key(call, _IDEMPOTENCY_KEY_LIMIT) if cost else None
        return VendorEstimate(cost, call.body, key, describe)

    def actual(
        self, call: VendorCall, status: int, response_body: bytes, estimate: VendorEstimate
    ) -> int | None:
        """USD of what the returned object says moved; None when it says nothing usable."""
        action = _action(call)
        if action is None or estimate.cost_micros == 0 or not 200 <= status < 300:
            return None
        try:
            answer = json.loads(response_body)
        except ValueError:
            return None
        if not isinstance(answer, dict):
            return None
        amount, currency = answer.get(action.reported_field), answer.get("currency")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            return None
        if not isinstance(currency, str) or currency.lower() not in self._usd_per_unit:
            return None
        return self._usd_micros(amount, currency.lower())

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


def _amount(value: object, name: str) -> int | None:
    """An amount in the smallest currency unit: a non-negative integer, or None when absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        if len(value.lstrip("-")) > _MAX_AMOUNT_DIGITS:
            raise invalid_request(f"`{name}` is too large: {value}.", name)
        number = int(value)
    else:
        raise invalid_request(
            f"`{name}` must be an integer in the currency's smallest unit "
            f"(e.g. 2000 for 20.00 USD), got {value!r}.",
            name,
        )
    if number < 0:
        raise invalid_request(f"`{name}` must not be negative, got {number}.", name)
    if number >= 10**_MAX_AMOUNT_DIGITS:
        raise invalid_request(f"`{name}` is too large: {number}.", name)
    return number
