"""Reading a refusal off whatever the agent's code holds after the fact: an SDK's exception or
an HTTP response of any usual client, for code that does not intercept."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from outlay.sdk.errors import OutlayError, error_from_answer, is_refusal_code


def error_from(thing: object) -> OutlayError | None:
    """The typed Outlay error behind an exception or an HTTP response, or None.

    Takes what code that does not intercept has in hand: an `openai` or `anthropic` status
    error, a `stripe.StripeError`, a `resend` or `twilio` error, `requests` and `httpx`
    responses or their HTTPError exceptions. Vendor SDKs that keep only the status give a
    402 as BudgetExceeded and a 429 as RateLimited, without their details.
    """
    if isinstance(thing, OutlayError):
        return thing
    answer = _answer_of(thing)
    return None if answer is None else error_from_answer(*answer)


def _answer_of(thing: object) -> tuple[int, Mapping[str, str] | None, object] | None:
    """(status, headers, body) read off the shapes of the usual clients, without importing
    any of them: an object of a library that is not loaded cannot be in hand."""
    stripe_status = getattr(thing, "http_status", None)
    if isinstance(stripe_status, int):
        return stripe_status, getattr(thing, "headers", None), getattr(thing, "json_body", None)
    response = getattr(thing, "response", None)
    if _is_response(response):
        status, headers, body = _read_response(response)
        # a stream's error body may be gone from the response; the SDK error kept it
        return status, headers, body if body is not None else getattr(thing, "body", None)
    if _is_response(thing):
        return _read_response(thing)
    resend = sys.modules.get("resend.exceptions")
    if resend is not None and isinstance(thing, resend.ResendError):
        code = _int(thing.code)  # resend's `code` is the HTTP status, its `error_type` ours
        if code is None:
            return None
        name = getattr(thing, "error_type", None)
        body = ({"code": name, "message": getattr(thing, "message", "") or ""}
                if is_refusal_code(name) else None)  # else Resend's own: by status alone
        return code, thing.headers, body
    twilio = sys.modules.get("twilio.base.exceptions")
    if twilio is not None and isinstance(thing, twilio.TwilioRestException):
        twilio_status = _int(thing.status)
        if twilio_status is None:
            return None
        return twilio_status, None, _twilio_body(thing)
    return None


def _twilio_body(error: Any) -> dict[str, Any] | None:
    """What twilio-python keeps of an error body: its `code` (ours is a word, Twilio's own a
    number: then None, typed by status alone), `message` (after its "Unable to create
    record: "), and `details`."""
    code = getattr(error, "code", None)
    if not is_refusal_code(code):
        return None
    details = getattr(error, "details", None)
    message = _TWILIO_PREFIX.sub("", str(getattr(error, "msg", "") or ""), count=1)
    return {**(details if isinstance(details, dict) else {}), "code": code, "message": message}


_TWILIO_PREFIX = re.compile(r"^(\[HTTP \d+\] )?Unable to \w+ record: ")


def _is_response(thing: object) -> bool:
    return isinstance(getattr(thing, "status_code", None), int) and hasattr(thing, "headers")


def _read_response(response: Any) -> tuple[int, Mapping[str, str] | None, object]:
    try:
        content = response.content
    except Exception:  # an httpx stream not read yet: the body is unknown, not an error
        content = None
    return response.status_code, response.headers, content


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class BudgetLeft:
    """What an allowed answer says of the tightest hard budget that applied to the call:
    what is left of it once this call's most is held (`X-Outlay-Budget-Remaining-Usd`),
    and its scope (`X-Outlay-Budget-Scope`, e.g. `tag:customer=acme`)."""

    remaining_usd: Decimal
    scope: str | None


def budget_of(thing: object) -> BudgetLeft | None:
    """The budget an allowed answer reports, read off what the agent's code holds: an
    `openai` or `anthropic` raw response (`.with_raw_response`), an `httpx` or `requests`
    response, or a mapping of headers. None when no hard budget applied (or no headers)."""
    headers = thing if isinstance(thing, Mapping) else getattr(thing, "headers", None)
    if headers is None:
        headers = getattr(getattr(thing, "response", None), "headers", None)
    if headers is None:
        return None
    remaining = _header(headers, "x-outlay-budget-remaining-usd")
    if remaining is None:
        return None
    try:
        amount = Decimal(remaining)
    except InvalidOperation:
        return None
    return BudgetLeft(amount, _header(headers, "x-outlay-budget-scope"))


def _header(headers: object, name: str) -> str | None:
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get(name)
    if value is None and isinstance(headers, Mapping):  # a plain dict keeps its own case
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return value if isinstance(value, str) else None
