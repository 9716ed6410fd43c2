"""Resend: the price per email x every recipient (to, cc, bcc) of every email sent.

`POST /emails` sends one email and `POST /emails/batch` a JSON array of up to 100. A
broadcast created with `send: true` goes to a whole audience: no price is known for it. The
catalogue says which other endpoints move no money (SPEC §3).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from outlay.policy.errors import invalid_request
from outlay.vendors.base import (
    VendorCall,
    VendorEstimate,
    config_usd,
    exact_micros,
    free,
    idempotency_key,
    route_path,
    unpriced,
)
from outlay.vendors.bodies import body_kind, read_json

# Resend's list price past the plan's included volume: $0.90 per 1,000 emails.
DEFAULT_USD_PER_EMAIL = Decimal("0.0009")
MAX_BATCH = 100  # Resend refuses larger batches
_IDEMPOTENCY_KEY_LIMIT = 256
_RECIPIENT_FIELDS = ("to", "cc", "bcc")


class ResendPricing:
    def __init__(self, usd_per_email: Decimal) -> None:
        self._usd_per_email = usd_per_email

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ResendPricing:
        price = config.get("usd_per_email")
        if price is None:
            return cls(DEFAULT_USD_PER_EMAIL)
        return cls(config_usd(price, "vendors.resend.usd_per_email"))

    def estimate(self, call: VendorCall) -> VendorEstimate:
        path = route_path(call.path).lower()
        if call.method.upper() == "POST" and path == "/broadcasts":
            return _broadcast(call)
        if call.method.upper() != "POST" or path not in ("/emails", "/emails/batch"):
            return free(call, "sends no email")
        if body_kind(call, "json") != "json":
            raise invalid_request("Resend takes JSON request bodies.")
        data = read_json(call)
        if path == "/emails":
            if not isinstance(data, dict):
                raise invalid_request("The request body must be a JSON object (one email).")
            recipients = _recipients(data, "")
            describe = f"email to {recipients} recipient{'' if recipients == 1 else 's'}"
        else:
            if not isinstance(data, list) or not data:
                raise invalid_request("A batch must be a non-empty JSON array of emails.")
            if len(data) > MAX_BATCH:
                raise invalid_request(f"A batch holds at most {MAX_BATCH} emails, got {len(data)}.")
            recipients = 0
            for index, email in enumerate(data):
                if not isinstance(email, dict):
                    raise invalid_request(f"`[{index}]` must be an email object.", f"[{index}]")
                recipients += _recipients(email, f"[{index}].")
            describe = f"email batch of {len(data)}, {recipients} recipients"
        cost = exact_micros(recipients, self._usd_per_email)
        key = idempotency_key(call, _IDEMPOTENCY_KEY_LIMIT) if cost else None
        return VendorEstimate(cost, call.body, key, describe)

    def actual(
        self, call: VendorCall, status: int, response_body: bytes, estimate: VendorEstimate
    ) -> int | None:
        return None  # Resend's answer carries ids, not prices: settle at the estimate


def _broadcast(call: VendorCall) -> VendorEstimate:
    """Creating a broadcast: a draft is free; `send: true` sends it to a whole audience at
    once, whose size the request does not say."""
    data = read_json(call) if call.body else {}
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object (one broadcast).")
    sent = data.get("send")
    if sent is not None and not isinstance(sent, bool):
        raise invalid_request(f"`send` must be true or false, got {sent!r}.", "send")
    if sent:
        return unpriced(call)
    return free(call, "a draft broadcast sends nothing")


def _recipients(email: Mapping[str, Any], where: str) -> int:
    """Addresses in to, cc and bcc; `to` is required."""
    total = 0
    for name in _RECIPIENT_FIELDS:
        value = email.get(name)
        param = f"{where}{name}"
        if value is None:
            if name == "to":
                raise invalid_request(f"`{param}` is required: an address or a list.", param)
            continue
        addresses = [value] if isinstance(value, str) else value
        if not isinstance(addresses, list) or (name == "to" and not addresses):
            raise invalid_request(f"`{param}` must be an address or a list of them.", param)
        for address in addresses:
            if not isinstance(address, str) or not address.strip():
                raise invalid_request(f"`{param}` holds a value that is not an address.", param)
            total += _count_addresses(address)
    return total


def _count_addresses(text: str) -> int:
    """Addresses in one string: a comma outside quotes and <> separates two of them.

    Counted so that `"a@x.com, b@y.com"` cannot pass for one recipient.
    """
    count, quoted, angled, current = 0, False, False, False
    for char in text:
        if char == '"' and not angled:
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        elif char == "," and not quoted and not angled:
            count += 1 if current else 0
            current = False
            continue
        if not char.isspace():
            current = True
    return max(1, count + (1 if current else 0))
