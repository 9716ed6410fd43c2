"""What the simulated Resend's APIs share: its error object and JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping

ERROR_NAMES: Mapping[int, str] = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_idempotent_request",
    422: "validation_error",
    429: "rate_limit_exceeded",
}


class ResendError(Exception):
    """A request Resend refuses, rendered as its error object."""

    def __init__(self, status: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name or ERROR_NAMES.get(status, "application_error")


def json_body(body: bytes) -> object:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ResendError(400, "The request body must be valid JSON.") from None
