"""Reading what an agent sent: its key and its JSON body, refusing bad input clearly."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from outlay.policy.errors import TooLarge, invalid_request


def agent_key(request: web.Request) -> str | None:
    """The Outlay key from `Authorization: Bearer`, `x-api-key`, or basic auth's password."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return value.strip()
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return request.headers.get("x-api-key") or None


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    if len(body) > max_bytes:
        raise _too_large(max_bytes)
    return body


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge("request_too_large", f"The request body is larger than {max_bytes} bytes.")


def parse_json_object(request: web.Request, body: bytes) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise invalid_request(
            f"Content-Type must be application/json, got {request.content_type or 'none'}."
        )
    if not body:
        raise invalid_request("The request body is empty; a JSON object is required.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"The request body is not valid JSON (UTF-8): {exc}.") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    return data
