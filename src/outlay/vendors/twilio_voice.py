"""Twilio voice and numbers: an outbound call reserves the destination's price per minute times
its minutes; buying a phone number reserves its first month.

A call's minutes are its `TimeLimit` (Twilio's default, 4 hours, when it names none), a
minute begun being a minute billed. Where the budgets leave less, Outlay lowers the limit to
what fits, as it clamps an LLM call's maximum output, and sends the call with that
`TimeLimit`; when not one minute fits the call is refused. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from outlay.policy.decision import Clamp
from outlay.policy.errors import invalid_request
from outlay.vendors.base import VendorCall, VendorEstimate, exact_micros
from outlay.vendors.bodies import Fields, with_form_field
from outlay.vendors.twilio_countries import country_of, destination

MAX_TIME_LIMIT_S = 14_400  # Twilio's longest call, and the TimeLimit of one that names none
_SECONDS = re.compile(r"[0-9]{1,6}")
_AREA_CODE = re.compile(r"[2-9][0-9]{2}")
_NUMBER = re.compile(r"\+([1-9][0-9]{6,14})")
# toll-free prefixes, as E.164 digits: the North American 8xx codes, and the UK's 0800, 0808
_TOLL_FREE = ("1800", "1833", "1844", "1855", "1866", "1877", "1888", "44800", "44808")


@dataclass(frozen=True)
class VoicePrices:
    voice: Mapping[str, Decimal]  # USD a minute, by destination country
    default_voice: Decimal
    numbers: Mapping[str, Decimal]  # USD a month, by country
    toll_free: Mapping[str, Decimal]
    default_number: Decimal


def call_estimate(call: VendorCall, fields: Fields, prices: VoicePrices) -> VendorEstimate:
    """An outbound call (POST …/Calls.json)."""
    channel, country = destination(fields.get("To", any_case=True))
    where = country or f"an unknown {channel if channel != 'sms' else 'destination'}"
    rate = prices.voice.get(country or "", prices.default_voice)
    seconds = _time_limit(fields.get("TimeLimit", any_case=True))
    minutes = math.ceil((seconds or MAX_TIME_LIMIT_S) / 60)
    # micro-USD per million minutes, so that clamp.cost(n) is n minutes at `rate`, rounded up
    per_minute = math.ceil(Fraction(rate) * 10**12)
    clamp = Clamp(base=0, per_token=per_minute, limit=minutes, floor=1)
    body = call.body
    if seconds is None:  # Twilio's own default, said out loud: it is what was reserved
        body = with_form_field(body, "TimeLimit", str(MAX_TIME_LIMIT_S))

    def limited(most: int) -> tuple[bytes, dict[str, str]]:
        seconds = str(most * 60)
        return (with_form_field(call.body, "TimeLimit", seconds),
                {"X-Outlay-Time-Limit-Clamped": seconds})

    describe = f"call to {where}, up to {minutes} minute{'' if minutes == 1 else 's'} at ${rate}"
    return VendorEstimate(clamp.cost(minutes), body, None, describe, clamp, limited)


def number_estimate(call: VendorCall, fields: Fields, prices: VoicePrices) -> VendorEstimate:
    """Buying a phone number (POST …/IncomingPhoneNumbers.json) reserves its first month."""
    number, area = fields.get("PhoneNumber", any_case=True), fields.get("AreaCode", any_case=True)
    if number is not None:
        found = _NUMBER.fullmatch(str(number).strip())
        if found is None:
            raise invalid_request(f"`PhoneNumber` must be in E.164 form such as +14155550100, "
                                  f"got {number!r}.", "PhoneNumber")
        digits = found.group(1)
    elif area is not None:
        if not _AREA_CODE.fullmatch(str(area).strip()):
            raise invalid_request(f"`AreaCode` must be a three-digit area code, got {area!r}.",
                                  "AreaCode")
        digits = "1" + str(area).strip()
    else:
        raise invalid_request("`PhoneNumber` or `AreaCode` is required: the number to buy.",
                              "PhoneNumber")
    country = country_of(digits)
    toll_free = digits.startswith(_TOLL_FREE)
    price = prices.numbers.get(country or "", prices.default_number)
    if toll_free:
        price = prices.toll_free.get(country or "", price)
    kind = "toll-free number" if toll_free else "number"
    describe = f"{kind} in {country or 'an unknown country'}, first month at ${price}"
    return VendorEstimate(exact_micros(price), call.body, None, describe)


def _time_limit(value: object) -> int | None:
    """TimeLimit in seconds (1 to 4 hours), or None when the call names none."""
    if value is None:
        return None
    text = str(value).strip()
    if not _SECONDS.fullmatch(text) or not 1 <= int(text) <= MAX_TIME_LIMIT_S:
        raise invalid_request(
            f"`TimeLimit` must be a whole number of seconds from 1 to {MAX_TIME_LIMIT_S}, "
            f"got {value!r}.", "TimeLimit")
    return int(text)
