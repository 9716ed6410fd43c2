"""Twilio Messages: segments of the Body x the price per segment of the country of `To`.

Outlay forwards the message with `MaxPrice` set to what it reserved, so that Twilio fails a
message that would cost more instead of sending it. Calls and phone numbers are priced by
vendors.twilio_voice; the catalogue says which other endpoints move no money.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from importlib.resources import files
from typing import Any

import yaml

from outlay.policy.errors import BadRequest, invalid_request
from outlay.policy.money import micros_to_usd, usd_to_micros
from outlay.vendors.base import (
    VendorCall,
    VendorEstimate,
    config_section,
    config_usd,
    exact_micros,
    free,
    route_path,
)
from outlay.vendors.bodies import Fields, body_kind, with_form_field
from outlay.vendors.twilio_countries import destination
from outlay.vendors.twilio_segments import sms_segments
from outlay.vendors.twilio_voice import VoicePrices, call_estimate, number_estimate

# POST /2010-04-01/Accounts/{AccountSid}/Messages.json creates (sends) a message; Calls.json
# places a call, IncomingPhoneNumbers.json buys a number.
_ACCOUNT = r"/2010-04-01/Accounts/[^/]+/"
MESSAGES = re.compile(_ACCOUNT + r"Messages(?:\.json|\.xml)?", re.IGNORECASE)
CALLS = re.compile(_ACCOUNT + r"Calls(?:\.json|\.xml)?", re.IGNORECASE)
_NUMBERS = re.compile(_ACCOUNT + r"IncomingPhoneNumbers(?:\.json|\.xml)?", re.IGNORECASE)
_COUNTRY = re.compile(r"[A-Z]{2}")


class TwilioPricing:
    """Prices Twilio messages from per-country SMS (per segment) and MMS (per message) prices."""

    def __init__(
        self, sms: Mapping[str, Decimal], default_sms: Decimal, mms: Mapping[str, Decimal],
        voice: VoicePrices,
    ) -> None:
        self._sms = dict(sms)
        self._default_sms = default_sms
        self._mms = dict(mms)
        self._voice = voice

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TwilioPricing:
        """The shipped twilio_prices.yaml with the vendor's config section applied."""
        text = files("outlay.vendors").joinpath("twilio_prices.yaml").read_text("utf-8")
        shipped = yaml.safe_load(text)
        sms = _prices(shipped["sms"], "twilio_prices.yaml sms")
        mms = _prices(shipped["mms"], "twilio_prices.yaml mms")
        default = config_usd(shipped["default_sms"], "twilio_prices.yaml default_sms")
        for key, table in (("sms_prices", sms), ("mms_prices", mms)):
            section = config_section(config, key, "vendors.twilio")
            table.update(_prices(section, f"vendors.twilio.{key}"))
        if config.get("default_sms_price") is not None:
            default = config_usd(config["default_sms_price"], "vendors.twilio.default_sms_price")
        return cls(sms, default, mms, _voice_prices(shipped, config))

    def estimate(self, call: VendorCall) -> VendorEstimate:
        path = route_path(call.path)
        if call.method.upper() != "POST" or not any(
                kind.fullmatch(path) for kind in (MESSAGES, CALLS, _NUMBERS)):
            return free(call, "sends no message, places no call, buys no number")
        if body_kind(call, "form") != "form":
            raise invalid_request("Twilio takes form-encoded request bodies.")
        fields = Fields.of(call, "form")
        if CALLS.fullmatch(path):
            return call_estimate(call, fields, self._voice)
        if _NUMBERS.fullmatch(path):
            return number_estimate(call, fields, self._voice)
        # Twilio's parameter names are PascalCase; any spelling of one is read as that one.
        channel, country = destination(fields.get("To", any_case=True))
        body = fields.get("Body", any_case=True)
        media = fields.get("MediaUrl", any_case=True) is not None
        if not body and not media:
            raise invalid_request("`Body` is required: the text of the message.", "Body")
        where = country or "an unknown country"
        if channel == "whatsapp":
            # A WhatsApp message is billed per message, at the destination's SMS price.
            cost = exact_micros(self._sms.get(country or "", self._default_sms))
            describe = f"whatsapp message to {where}"
        elif media:
            cost = exact_micros(self._mms_price(country))
            describe = f"mms to {where}"
        else:
            segments = sms_segments(body)
            cost = exact_micros(segments.count, self._sms.get(country or "", self._default_sms))
            plural = "" if segments.count == 1 else "s"
            encoding = " (UCS-2)" if segments.encoding == "UCS-2" else ""
            describe = f"{channel} {segments.count} segment{plural}{encoding} to {where}"
        given = fields.get("MaxPrice", any_case=True)
        if cost == 0:  # an operator priced this route at zero: nothing to cap
            return VendorEstimate(0, call.body, None, describe)
        forwarded = with_form_field(call.body, "MaxPrice", _max_price(given, cost))
        return VendorEstimate(cost, forwarded, None, describe)

    def actual(
        self, call: VendorCall, status: int, response_body: bytes, estimate: VendorEstimate
    ) -> int | None:
        """The message's `price` (a negative USD string) once Twilio knows it; else None."""
        if estimate.cost_micros == 0 or not 200 <= status < 300:
            return None
        try:
            message = json.loads(response_body)
        except ValueError:
            return None
        if not isinstance(message, dict) or not isinstance(message.get("price"), str):
            return None  # null until the carrier reports it, which is after the create call
        unit = message.get("price_unit")
        if unit is not None and str(unit).upper() != "USD":
            return None
        try:
            return usd_to_micros(abs(Decimal(message["price"])))
        except (InvalidOperation, ValueError):
            return None

    def _mms_price(self, country: str | None) -> Decimal:
        price = self._mms.get(country or "")
        if price is None:
            raise BadRequest(
                "price_unknown",
                f"Outlay has no MMS price for {country or 'this destination'}; an operator "
                "can set one under vendors.twilio.mms_prices, or send the message without media.",
                param="MediaUrl",
            )
        return price


def _max_price(given: object, cost_micros: int) -> str:
    """MaxPrice to forward: the reservation, or the agent's own when it is lower."""
    reserved = micros_to_usd(cost_micros)
    if given is None:
        return reserved
    try:
        own = Decimal(str(given).strip())
    except InvalidOperation:
        own = Decimal("NaN")
    if not own.is_finite() or own < 0:
        raise invalid_request(f"`MaxPrice` must be a USD amount, got {given!r}.", "MaxPrice")
    return format(own, "f") if own < Decimal(reserved) else reserved


def _prices(raw: Mapping[Any, Any], where: str) -> dict[str, Decimal]:
    prices: dict[str, Decimal] = {}
    for country, price in raw.items():
        if isinstance(country, bool):
            raise ValueError(
                f"{where}: quote country codes, e.g. 'NO' (YAML reads NO as {country})"
            )
        if not isinstance(country, str) or not _COUNTRY.fullmatch(country.upper()):
            raise ValueError(f"{where}: {country!r} is not an ISO 3166 alpha-2 country code")
        prices[country.upper()] = config_usd(price, f"{where}.{country}")
    return prices


def _voice_prices(shipped: Mapping[str, Any], config: Mapping[str, Any]) -> VoicePrices:
    """The shipped voice and number prices with `vendors.twilio` applied."""
    tables = {}
    for key, option in (("voice", "voice_prices"), ("numbers", "number_prices"),
                        ("toll_free_numbers", "toll_free_number_prices")):
        tables[key] = _prices(shipped[key], f"twilio_prices.yaml {key}")
        tables[key].update(_prices(config_section(config, option, "vendors.twilio"),
                                   f"vendors.twilio.{option}"))
    defaults = {}
    for key, option in (("default_voice", "default_voice_price"),
                        ("default_number", "default_number_price")):
        given = config.get(option)
        defaults[key] = (config_usd(shipped[key], f"twilio_prices.yaml {key}") if given is None
                         else config_usd(given, f"vendors.twilio.{option}"))
    return VoicePrices(tables["voice"], defaults["default_voice"], tables["numbers"],
                       tables["toll_free_numbers"], defaults["default_number"])
