"""The admin API under /admin/v1/: keys, agents, groups, policies, usage, audit, reports,
prices and providers."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from outlay.admin.access import authenticate, authorize, install
from outlay.admin.agents import (
    create_agent,
    create_key,
    key_policy,
    key_view,
    labels,
    update_agent,
)
from outlay.admin.approvals import add_approval_routes
from outlay.admin.common import PREFIX, dump, error_response, int_query, read_json
from outlay.admin.csv_export import csv_export
from outlay.admin.openapi import openapi_document
from outlay.admin.policies import (
    delete_policy,
    get_policy,
    list_policies,
    patch_policy,
    put_policy,
)
from outlay.admin.reports import report, series
from outlay.admin.tokens import add_access_routes
from outlay.admin.webhooks import add_webhook_routes
from outlay.gateway.context import GATEWAY
from outlay.gateway.header_values import credential
from outlay.policy.errors import OutlayError, invalid_request
from outlay.policy.model import PolicyError, parse_scope
from outlay.state.base import NotFound, StateError
from outlay.state.config_policies import PolicyManaged

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_AUDIT = 1000
MAX_KEYS = 10_000  # a page of the key listing


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin routes need an admin token allowed the call; errors become JSON. Agent keys
    never pass."""
    if not request.path.startswith(PREFIX + "/") or request.path == PREFIX + "/openapi.json":
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # a token that is not printable ASCII is refused before it is hashed (credential)
    token = credential(token.strip()) or ""
    try:  # who the token is, and whether its role and scopes allow the call (access.py)
        return await authorize(request, await authenticate(request, scheme, token), handler)
    except OutlayError as err:
        response = error_response(err.status, err.code, err.message, err.details.get("param"),
                                  **{k: v for k, v in err.details.items() if k != "param"})
        response.headers.update(err.headers)
        return response
    except PolicyError as err:
        return error_response(400, "invalid_policy", str(err), err.field)
    except NotFound as err:
        return error_response(404, "not_found", str(err.args[0]) if err.args else "not found")
    except PolicyManaged as err:
        return error_response(409, "policy_managed_by_config", str(err), scope=err.scope,
                              file=err.file)
    except StateError as err:
        return error_response(503, "enforcement_unavailable", str(err))
    except web.HTTPException as exc:  # no such admin route, or not with that method
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "invalid_request")
        response = error_response(
            exc.status, code, f"{exc.reason}: {request.method} {request.path}")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


async def list_keys(request: web.Request) -> web.Response:
    """Every key, oldest first; `limit` gives the newest that many, newest first, and `more`
    says whether there are others; `active=true` only keys neither revoked nor expired."""
    gw = request.app[GATEWAY]
    limit = int_query(request, "limit", 0, MAX_KEYS) or None
    active = request.query.get("active", "false")
    if active not in ("true", "false"):
        raise invalid_request("active must be true or false", "active")
    records = await gw.store.list_keys(
        request.query.get("agent"), limit=None if limit is None else limit + 1,
        active_at_ms=gw.clock() if active == "true" else None)
    answer: dict[str, Any] = {"keys": [key_view(r) for r in records[:limit]]}
    if limit is not None:
        answer["more"] = len(records) > limit
    return dump(answer)


async def show_key(request: web.Request) -> web.Response:
    return dump(key_view(await request.app[GATEWAY].store.get_key(request.match_info["id"])))


async def update_key(request: web.Request) -> web.Response:
    body = await read_json(request, ("name", "labels", "policy"))
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_request("name must be a string", "name")
    record = await request.app[GATEWAY].store.update_key(
        request.match_info["id"], name, labels(body.get("labels")), key_policy(request, body))
    return dump(key_view(record))


async def revoke_key(request: web.Request) -> web.Response:
    await read_json(request, ())  # takes no fields: a body naming one is a mistake
    gw = request.app[GATEWAY]
    record = await gw.store.revoke_key(request.match_info["id"])
    gw.streams.cut(record.id)
    return dump(key_view(record))


async def list_agents(request: web.Request) -> web.Response:
    return dump({"agents": await request.app[GATEWAY].store.list_agents()})


async def list_groups(request: web.Request) -> web.Response:
    return dump({"groups": await request.app[GATEWAY].store.list_groups()})


async def usage(request: web.Request) -> web.Response:
    scope = parse_scope(request.match_info["scope"])
    limit = int_query(request, "values", 100, MAX_AUDIT)
    return dump(await request.app[GATEWAY].store.usage(scope, limit))


async def audit(request: web.Request) -> web.Response:
    scope = request.query.get("scope")
    limit = int_query(request, "limit", 100, MAX_AUDIT)
    entries = await request.app[GATEWAY].store.audit(
        audit_scope(scope) if scope else None, limit)
    return dump({"entries": entries})


def audit_scope(text: str) -> str:
    """A scope to filter the audit by, or `label:<name>=<value>` (a key's label or a call's
    tag): the rows of calls carrying that label, as the scope `tag:<name>=<value>` says."""
    if text.startswith("label:"):
        scope = parse_scope("tag:" + text.removeprefix("label:"))
        if scope.endswith("=*"):
            raise invalid_request("a label filter names one value: label:<name>=<value>",
                                  "scope")
        return scope
    return parse_scope(text)


async def prices(request: web.Request) -> web.Response:
    return dump({"models": request.app[GATEWAY].prices.to_list()})


async def price_of(request: web.Request) -> web.Response:
    """One model as a request naming it is priced (by name, alias or dated snapshot), with
    every dimension, and the tier a request for `auto` is reserved at."""
    gw = request.app[GATEWAY]
    requested = request.match_info["model"]
    found = gw.prices.resolve(requested)
    if found is None:
        raise NotFound(f"no price for model {requested!r}")
    return dump({"requested": requested, **found.to_dict(), "source": dict(found.sources),
                 "base_tier": found.base_tier,
                 "service_tier_default": gw.settings.service_tier_defaults.get(
                     found.provider, found.base_tier)})


async def providers(request: web.Request) -> web.Response:
    """Every endpoint the gateway sends to, by its circuit breaker. Each worker process has
    breakers of its own: the answer is the view of the one that answered (`worker`)."""
    gw = request.app[GATEWAY]
    return dump({"worker": os.getpid(), "providers": [
        {"kind": kind, "provider": h.provider, "base_url": h.base_url, "weight": h.weight,
         "state": h.state.value, "consecutive_failures": h.consecutive_failures,
         "simulated": h.base_url == "simulated"}
        for kind, upstream in (("llm", gw.upstream), ("vendor", gw.vendors))
        for h in upstream.health()]})


async def openapi(_: web.Request) -> web.Response:
    return dump(openapi_document())


def add_admin_routes(app: web.Application) -> None:
    app.middlewares.append(csv_export)  # outside the guard: CSV of what the token may see
    app.middlewares.append(admin_guard)
    install(app)
    r = app.router
    r.add_get(f"{PREFIX}/openapi.json", openapi)
    r.add_post(f"{PREFIX}/keys", create_key)
    r.add_get(f"{PREFIX}/keys", list_keys)
    r.add_get(f"{PREFIX}/keys/{{id}}", show_key)
    r.add_patch(f"{PREFIX}/keys/{{id}}", update_key)
    r.add_post(f"{PREFIX}/keys/{{id}}/revoke", revoke_key)
    r.add_post(f"{PREFIX}/agents", create_agent)
    r.add_patch(f"{PREFIX}/agents/{{name}}", update_agent)
    r.add_get(f"{PREFIX}/agents", list_agents)
    r.add_get(f"{PREFIX}/groups", list_groups)
    r.add_get(f"{PREFIX}/policies", list_policies)
    r.add_put(f"{PREFIX}/policies/{{scope}}", put_policy)
    r.add_patch(f"{PREFIX}/policies/{{scope}}", patch_policy)
    r.add_get(f"{PREFIX}/policies/{{scope}}", get_policy)
    r.add_delete(f"{PREFIX}/policies/{{scope}}", delete_policy)
    r.add_get(f"{PREFIX}/usage/{{scope}}", usage)
    r.add_get(f"{PREFIX}/audit", audit)
    r.add_get(f"{PREFIX}/reports", report)
    r.add_get(f"{PREFIX}/reports/series", series)
    r.add_get(f"{PREFIX}/prices", prices)
    r.add_get(f"{PREFIX}/prices/{{model}}", price_of)
    r.add_get(f"{PREFIX}/providers", providers)
    add_approval_routes(app)
    add_webhook_routes(app)
    add_access_routes(app)
