"""What every admin route module shares: the prefix, JSON in and out, query numbers and the
error body."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from outlay.config_sections import did_you_mean
from outlay.policy.errors import invalid_request

PREFIX = "/admin/v1"


def error_response(status: int, code: str, message: str, param: str | None = None,
                   **details: Any) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "admin_error", "code": code, "param": param,
                   **details}},
        status=status, dumps=lambda o: orjson.dumps(o).decode())


async def read_json(request: web.Request, known: tuple[str, ...] | None) -> dict[str, Any]:
    """The JSON object a request sends; a field outside `known` (None: the caller checks
    them) is refused, naming it, the nearest known name and every known one, before
    anything is stored."""
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    if known is not None:
        unknown_fields(data, known)
    return data


def unknown_fields(data: dict[str, Any], known: tuple[str, ...], what: str = "field") -> None:
    unknown = sorted(str(name) for name in set(data) - set(known))
    if unknown:
        hint = did_you_mean(unknown[0], known)
        listed = f"known: {', '.join(known)}" if known else "this route takes none"
        raise invalid_request(f"unknown {what}(s) {', '.join(unknown)}{hint}; {listed}",
                              unknown[0])


def dump(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def int_query(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise invalid_request(f"{name} must be a whole number from 1 to {high}", name)
    return int(raw)
