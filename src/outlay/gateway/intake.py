"""Reading what an agent sent: its key and its JSON body, refusing bad input clearly."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from outlay.gateway.header_values import credential
from outlay.policy.errors import invalid_request


def agent_key(headers: Mapping[str, str]) -> str | None:
    """The Outlay key from `Authorization: Bearer`, `x-api-key`, or basic auth's password
    (`headers` case-insensitive); None when none is given or it cannot be a key (bytes
    that are not printable ASCII), which the store answers 401 invalid_api_key."""
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return credential(value.strip())
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:  # not base64 (ASCII only, or binascii.Error), or not UTF-8
            return None
        # the password (Twilio's SDK: account SID and token), else the user name: curl's
        # `-u olk_…:`, as Stripe documents its own keys
        user, _, password = decoded.partition(":")
        return credential(password or user) or None
    return credential(headers.get("x-api-key") or "") or None


def parse_json_object(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type != "application/json":
        raise invalid_request(
            f"Content-Type must be application/json, got {content_type or 'none'}."
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
