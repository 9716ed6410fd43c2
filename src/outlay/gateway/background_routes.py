"""`GET /v1/responses/{id}` and `POST /v1/responses/{id}/cancel` of background responses,
for the key that created them only (another key, or an id Outlay holds nothing for: 404);
an answer showing one finished settles it (`background.py`)."""

from __future__ import annotations

from aiohttp import web

from outlay.gateway.admission import new_request_id
from outlay.gateway.background import ID
from outlay.gateway.context import GATEWAY, Gateway
from outlay.gateway.errors import error_response
from outlay.gateway.forward import response_headers
from outlay.gateway.intake import agent_key
from outlay.policy.errors import AuthError, NotFound, OutlayError, Unavailable
from outlay.state.base import StateError
from outlay.state.keys import hash_secret
from outlay.upstream.base import UpstreamBroken, UpstreamUnreachable


def background_routes(app: web.Application) -> None:
    app.router.add_get("/v1/responses/{id}", retrieve)
    app.router.add_post("/v1/responses/{id}/cancel", cancel)


async def retrieve(request: web.Request) -> web.StreamResponse:
    return await _proxy(request, "GET")


async def cancel(request: web.Request) -> web.StreamResponse:
    return await _proxy(request, "POST")


async def _proxy(request: web.Request, method: str) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    response_id = request.match_info["id"]
    rid = new_request_id()
    try:
        await _authorize(gw, request, response_id)
        status, headers, body = await gw.background.send(method, response_id,
                                                         request.headers, request.query_string)
    except OutlayError as err:
        return error_response(err, "openai", rid)
    except (UpstreamUnreachable, UpstreamBroken) as exc:
        return error_response(Unavailable(
            "upstream_unavailable", f"The openai provider could not answer: {exc}",
            status=502), "openai", rid)
    await gw.background.seen(response_id, status, body)
    return web.Response(status=status, body=body,
                        headers=response_headers(headers, {"X-Outlay-Request-Id": rid}))


async def _authorize(gw: Gateway, request: web.Request, response_id: str) -> None:
    """Only the key that created a background response may see it."""
    secret = agent_key(request.headers)
    try:
        key = None if secret is None else await gw.store.key_by_hash(hash_secret(secret))
    except StateError as exc:
        raise Unavailable("enforcement_unavailable", f"The state store failed: {exc}") from None
    if key is None or key.revoked or (
            key.expires_at_ms is not None and key.expires_at_ms <= gw.clock()):
        raise AuthError("invalid_api_key", "Invalid, revoked or expired Outlay API key.")
    if not ID.match(response_id) or gw.background.owner(response_id) != key.id:
        raise NotFound("not_found", f"No background response '{response_id}' of this key.",
                       param="id")
