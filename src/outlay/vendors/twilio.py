"""Twilio Messages: segments of the Body x the price per segment of the country of `To`.

Outlay forwards the message with `MaxPrice` set to what it reserved, so that Twilio fails a
message that would cost more instead of sending it. Other Twilio endpoints cost nothing here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from importlib.resources import files
from typing import Any
from urllib.parse import quote_plus, unquote_plus

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
from outlay.vendors.bodies import Fields, body_kind
from outlay.vendors.twilio_countries import country_of
from outlay.vendors.twilio_segments import sms_segments

# POST /2010-04-01/Accounts/{AccountSid}/Messages.json creates (sends) a message.
_MESSAGES = re.compile(r"/2010-04-01/Accounts/[^/]+/Messages(?:\.json|\.xml)?", re.IGNORECASE)
_COUNTRY = re.compile(r"[A-Z]{2}")
_PHONE = re.compile(r"(\+?)([0-9]{2,15})")
# Characters people and SDKs put inside phone numbers that carry no digits.
_SEPARATORS = re.compile(r"[\s().-]")


class TwilioPricing:
    """Prices Twilio messages from per-country SMS (per segment) and MMS (per message) prices."""

    def __init__(
        self, sms: Mapping[str, Decimal], default_sms: Decimal, mms: Mapping[str, Decimal]
    ) -> None:
        self._sms = dict(sms)
        self._default_sms = default_sms
        self._mms = dict(mms)

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
        return cls(sms, default, mms)

    def estimate(self, call: VendorCall) -> VendorEstimate:
        if call.method.upper() != "POST" or not _MESSAGES.fullmatch(route_path(call.path)):
            return free(call, "sends no message")
        if body_kind(call, "form") != "form":
            raise invalid_request("Twilio takes form-encoded request bodies.")
        fields = Fields.of(call, "form")
        # Twilio's parameter names are PascalCase; any spelling of one is read as that one.
        channel, country = _destination(fields.get("To", any_case=True))
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
        forwarded = _with_max_price(call.body, _max_price(given, cost))
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


def _destination(to: object) -> tuple[str, str | None]:
    """The channel ("sms", "whatsapp", ...) and ISO country of `To`; country None if unknown."""
    if not isinstance(to, str) or not to.strip():
        raise invalid_request("`To` is required: the destination number in E.164 form.", "To")
    channel, address = "sms", to.strip()
    if ":" in address:  # whatsapp:+447700900123 and other channel addresses
        prefix, address = address.split(":", 1)
        channel = prefix.strip().lower()
    phone = _PHONE.fullmatch(_SEPARATORS.sub("", address))
    if phone is None:
        if channel != "sms":
            return channel, None  # a channel address that is not a number: price as unknown
        raise invalid_request(
            f"`To` must be a phone number in E.164 form such as +447700900123, got {to!r}.", "To"
        )
    plus, digits = phone.groups()
    # Without a leading + the number is national and its country cannot be known.
    return channel, country_of(digits) if plus else None


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


def _with_max_price(body: bytes, max_price: str) -> bytes:
    """The form body with every MaxPrice pair replaced by one, other bytes untouched."""
    kept = [
        pair
        for pair in body.split(b"&")
        if pair and unquote_plus(pair.split(b"=", 1)[0].decode("utf-8")).lower() != "maxprice"
    ]
    kept.append(b"MaxPrice=" + quote_plus(max_price).encode("ascii"))
    return b"&".join(kept)


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
