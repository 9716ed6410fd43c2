"""Refusals on vendor routes, in the shape and status each vendor's own SDK reads right: a
budget, rate or permission refusal must never look like a declined card (Stripe's 402) or a
failure the SDK retries. Every refusal on /vendors/ goes through `vendor_refusal`."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from outlay.gateway.errors import error_body
from outlay.policy.errors import OutlayError

__all__ = ["vendor_refusal", "vendor_refusal_answer"]


def _stripe(error: OutlayError, status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """stripe-python maps 402 to CardError and retries 409, 5xx and `Stripe-Should-Retry:
    true`: a budget or permission refusal is a 400 (InvalidRequestError, whose `code` the
    SDK keeps; its PermissionError drops it), a rate refusal a 429 (RateLimitError), none
    of them retried."""
    if status in (402, 403):
        status = 400
    details = {k: v for k, v in error.details.items() if k != "param"}
    body = {"error": {
        "type": "invalid_request_error" if status < 500 else "api_error",
        "code": error.code, "message": error.message, "param": error.details.get("param"),
        "outlay_type": error.error_type, **details}}
    headers = {"Stripe-Should-Retry": "false"} if status < 500 else {}
    return status, body, headers


def _twilio(error: OutlayError, status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """twilio-python raises TwilioRestException for every status of 400 and more, never
    retried, with the body's `message`, `code` and `details` (the refusal's details, there
    as well as at the top, are what it keeps of them)."""
    details = {k: v for k, v in error.details.items()
               if k not in ("code", "message", "status", "param", "details")}
    return status, {"code": error.code, "message": error.message, "status": status,
                    "more_info": None, "param": error.details.get("param"),
                    "outlay_type": error.error_type, **details, "details": details}, {}


def _resend(error: OutlayError, status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    """resend-python raises by `statusCode` and `name` and reads `message`; it never
    retries. A 402 is its plain ResendError."""
    details = {k: v for k, v in error.details.items()
               if k not in ("statusCode", "name", "message", "param")}
    return status, {"statusCode": status, "name": error.code, "code": error.code,
                    "message": error.message, "param": error.details.get("param"),
                    "outlay_type": error.error_type, **details}, {}


_SHAPES = {"stripe": _stripe, "twilio": _twilio, "resend": _resend}


def vendor_refusal_answer(error: OutlayError, vendor: str, request_id: str,
                          extra: dict[str, str] | None = None
                          ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a refusal of a call to `vendor` (OpenAI's error shape for
    a vendor without an SDK of its own)."""
    shape = _SHAPES.get(vendor)
    headers = {"Content-Type": "application/json", "X-Outlay-Request-Id": request_id,
               **error.headers, **(extra or {})}
    if shape is None:
        return error.status, headers, orjson.dumps(error_body(error, "openai"))
    status, body, own = shape(error, error.status)
    return status, {**headers, **own}, orjson.dumps(body)


def vendor_refusal(error: OutlayError, vendor: str, request_id: str,
                   extra: dict[str, str] | None = None) -> web.Response:
    status, headers, body = vendor_refusal_answer(error, vendor, request_id, extra)
    return web.Response(status=status, body=body, headers=headers)
