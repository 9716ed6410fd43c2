"""Admin routes for admin tokens (roles and scopes), the admin audit trail, and `whoami`:
what the calling token is and may do, for the dashboard and the CLI."""

from __future__ import annotations

from aiohttp import web

from outlay.admin.access import access_store, principal_of
from outlay.admin.common import PREFIX, dump, int_query, read_json
from outlay.gateway.context import GATEWAY
from outlay.policy.admin_roles import (
    ROLES,
    AccessError,
    parse_role,
    parse_scopes,
    parse_token_name,
    role_allows,
)
from outlay.policy.errors import invalid_request
from outlay.state.access import MAX_ADMIN_AUDIT

_FIELDS = ("name", "role", "scopes")


async def add_token(request: web.Request) -> web.Response:
    body = await read_json(request, _FIELDS)
    try:
        name, role = parse_token_name(body.get("name")), parse_role(body.get("role"))
        scopes = parse_scopes(body.get("scopes"))
    except AccessError as exc:
        raise invalid_request(str(exc), exc.param) from None
    view, secret = await access_store(request.app[GATEWAY].store).add_admin_token(
        name, role, scopes)
    return dump({**view, "token": secret}, 201)


async def list_tokens(request: web.Request) -> web.Response:
    return dump({"admin_tokens":
                 await access_store(request.app[GATEWAY].store).list_admin_tokens()})


async def revoke_token(request: web.Request) -> web.Response:
    store = access_store(request.app[GATEWAY].store)
    return dump(await store.revoke_admin_token(request.match_info["id"]))


async def admin_audit(request: web.Request) -> web.Response:
    """The admin writes, newest first, of `target` if given; a scoped token sees those on
    its agents and groups only."""
    limit = int_query(request, "limit", 100, MAX_ADMIN_AUDIT)
    target = request.query.get("target") or None
    principal = principal_of(request)
    entries = await access_store(request.app[GATEWAY].store).admin_audit(
        target, limit, principal.scopes)
    return dump({"entries": entries})


async def whoami(request: web.Request) -> web.Response:
    """The calling token: its name, role and scopes, and which roles' rights it holds."""
    principal = principal_of(request)
    return dump({"id": principal.id, "name": principal.name, "role": principal.role,
                 "scopes": list(principal.scopes),
                 "can": {role: role_allows(principal.role, role) for role in ROLES}})


def add_access_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{PREFIX}/admin-tokens", add_token)
    r.add_get(f"{PREFIX}/admin-tokens", list_tokens)
    r.add_post(f"{PREFIX}/admin-tokens/{{id}}/revoke", revoke_token)
    r.add_get(f"{PREFIX}/admin-audit", admin_audit)
    r.add_get(f"{PREFIX}/whoami", whoami)
