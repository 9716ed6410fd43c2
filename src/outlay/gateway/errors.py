"""Error bodies in the shape each client expects: OpenAI's on OpenAI and vendor routes,
Anthropic's on /v1/messages."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from aiohttp import web

from outlay.policy.errors import OutlayError

Flavor = Literal["openai", "anthropic"]


def error_body(error: OutlayError, flavor: Flavor) -> dict[str, Any]:
    details = {k: v for k, v in error.details.items() if k != "param"}
    if flavor == "anthropic":
        return {"type": "error", "error": {
            "type": error.error_type, "message": error.message, "code": error.code, **details,
        }}
    return {"error": {
        "message": error.message, "type": error.error_type, "code": error.code,
        "param": error.details.get("param"), **details,
    }}


def error_answer(
    error: OutlayError, flavor: Flavor, request_id: str, extra: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer to `error`."""
    headers = {"Content-Type": "application/json", "X-Outlay-Request-Id": request_id,
               **error.headers, **(extra or {})}
    return error.status, headers, orjson.dumps(error_body(error, flavor))


def error_response(
    error: OutlayError, flavor: Flavor, request_id: str, extra: dict[str, str] | None = None
) -> web.Response:
    status, headers, body = error_answer(error, flavor, request_id, extra)
    return web.Response(status=status, body=body, headers=headers)
