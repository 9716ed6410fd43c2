"""Reading a refusal off whatever the agent's code holds after the fact: an SDK's exception or
an HTTP response of any usual client, for code that does not intercept."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from outlay.sdk.errors import OutlayError, error_from_answer


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
        code = _int(thing.code)  # resend's `code` is the HTTP status
        return None if code is None else (code, thing.headers, None)
    twilio = sys.modules.get("twilio.base.exceptions")
    if twilio is not None and isinstance(thing, twilio.TwilioRestException):
        twilio_status = _int(thing.status)
        return None if twilio_status is None else (twilio_status, None, None)
    return None


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
