"""Where a vendor call sends, for a policy's `destinations` (policy.vendor_access): the
country of each number a Twilio message or call goes to (from its E.164 calling code), every
recipient address of a Resend e-mail (to, cc, bcc), and the audience of a broadcast. Pure.

Read after the call was priced, so a body its pricing refuses never gets here.
"""

from __future__ import annotations

from email.utils import getaddresses
from typing import Any

from outlay.policy.errors import BadRequest
from outlay.vendors.base import VendorCall, route_path
from outlay.vendors.bodies import Fields, read_json
from outlay.vendors.twilio import CALLS, MESSAGES
from outlay.vendors.twilio_countries import destination

UNKNOWN_COUNTRY = "unknown country"  # a number whose country cannot be told: no list has it
UNREADABLE = "unreadable destination"


def destinations(call: VendorCall) -> tuple[str, ...]:
    """Where `call` sends (countries, or e-mail addresses); () when it sends nothing. A body
    its pricing took (a vendor's own `rules` come first) but that says nowhere readable is
    UNREADABLE, which no list holds."""
    try:
        return _destinations(call)
    except BadRequest:
        return (UNREADABLE,)


def _destinations(call: VendorCall) -> tuple[str, ...]:
    if call.method.upper() != "POST":
        return ()
    path = route_path(call.path)
    if call.vendor == "twilio" and (MESSAGES.fullmatch(path) or CALLS.fullmatch(path)):
        to = Fields.of(call, "form").get("To", any_case=True)
        return (destination(to)[1] or UNKNOWN_COUNTRY,)
    if call.vendor == "resend":
        path = path.lower()
        if path == "/broadcasts":
            data = read_json(call) if call.body else {}
            if isinstance(data, dict) and data.get("send") is True:
                return (f"audience {data.get('audience_id') or data.get('segment_id')}",)
            return ()
        if path == "/emails":
            data = read_json(call)
            return _recipients(data) if isinstance(data, dict) else ()
        if path == "/emails/batch":
            data = read_json(call)
            found: list[str] = []
            for email in data if isinstance(data, list) else ():
                if isinstance(email, dict):
                    found.extend(_recipients(email))
            return tuple(dict.fromkeys(found))
    return ()


def _recipients(email: dict[str, Any]) -> tuple[str, ...]:
    """Every address in to, cc and bcc, each as its bare address (`Name <a@b>` gives `a@b`);
    a value that holds no address is given as written, which no pattern of addresses
    matches."""
    found: list[str] = []
    for name in ("to", "cc", "bcc"):
        value = email.get(name)
        texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for text in texts:
            if not isinstance(text, str):
                continue
            pairs = getaddresses([text])
            addresses = [address.strip() for _, address in pairs if address.strip()]
            found.extend(addresses or [text.strip()])
    return tuple(dict.fromkeys(found))
