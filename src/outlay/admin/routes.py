"""The admin API under /admin/v1/: keys, agents, groups, policies, usage, audit, reports,
prices and providers."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from outlay.admin.access import authenticate, authorize, install
from outlay.admin.approvals import add_approval_routes
from outlay.admin.common import PREFIX, dump, error_response, int_query, read_json
from outlay.admin.openapi import openapi_document
from outlay.admin.tokens import add_access_routes
from outlay.admin.webhooks import add_webhook_routes
from outlay.gateway.context import GATEWAY
from outlay.gateway.header_values import credential
from outlay.policy.decide import iso
from outlay.policy.errors import BadRequest, OutlayError, invalid_request
from outlay.policy.model import Policy, PolicyError, parse_policy, parse_scope
from outlay.state.base import KeyRecord, NewKey, NotFound, StateError
from outlay.state.config_policies import ConfigPolicies, PolicyManaged

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_AUDIT = 1000
MAX_KEYS = 10_000  # a page of the key listing
MAX_TTL_S = 10 * 366 * 86_400  # longer is no expiry at all: omit ttl_seconds for that


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
                                  **{k: v for k, v in err.details.items() if k == "missing"})
        response.headers.update(err.headers)
        return response
    except PolicyError as err:
        return error_response(400, "invalid_policy", str(err))
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


def _labels(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise invalid_request("labels must be an object of string values", "labels")
    return dict(value)


def key_view(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id, "agent": record.agent, "group": record.group, "name": record.name,
        "labels": dict(record.labels), "created_at": iso(record.created_ms),
        "expires_at": None if record.expires_ms is None else iso(record.expires_ms),
        "revoked_at": None if record.revoked_ms is None else iso(record.revoked_ms),
        "policy": None if record.policy is None else record.policy.to_dict(),
    }


async def create_key(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await read_json(request)
    agent = body.get("agent")
    if not isinstance(agent, str) or not agent:
        raise invalid_request("agent is required: the name of the agent that owns the key",
                              "agent")
    ttl = body.get("ttl_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                            or not 0 < ttl <= MAX_TTL_S):
        raise invalid_request(
            f"ttl_seconds must be a positive number of seconds up to {MAX_TTL_S} (ten years); "
            "leave it out for a key that does not expire", "ttl_seconds")
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_request("name must be a string", "name")
    policy = parse_policy(body["policy"]) if body.get("policy") is not None else None
    record, secret = await gw.store.create_key(NewKey(
        agent=agent, name=name, ttl_seconds=ttl, labels=_labels(body.get("labels")) or {},
        policy=policy))
    return dump({**key_view(record), "key": secret}, 201)


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
    body = await read_json(request)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_request("name must be a string", "name")
    policy = parse_policy(body["policy"]) if body.get("policy") is not None else None
    record = await request.app[GATEWAY].store.update_key(
        request.match_info["id"], name, _labels(body.get("labels")), policy)
    return dump(key_view(record))


async def revoke_key(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    record = await gw.store.revoke_key(request.match_info["id"])
    gw.streams.cut(record.id)
    return dump(key_view(record))


async def create_agent(request: web.Request) -> web.Response:
    body = await read_json(request)
    name, group = body.get("name"), body.get("group")
    if not isinstance(name, str) or not name:
        raise invalid_request("name is required", "name")
    if group is not None and (not isinstance(group, str) or not group):
        raise invalid_request("group must be a non-empty string", "group")
    return dump(await request.app[GATEWAY].store.create_agent(name, group), 201)


async def list_agents(request: web.Request) -> web.Response:
    return dump({"agents": await request.app[GATEWAY].store.list_agents()})


async def list_groups(request: web.Request) -> web.Response:
    return dump({"groups": await request.app[GATEWAY].store.list_groups()})


def policy_view(scope: str, policy: Policy, managed: ConfigPolicies) -> dict[str, Any]:
    """A policy as answered: its scope, the configuration file that manages it (null: the
    admin API does), and its fields."""
    by = (managed.file or "the configuration file") if scope in managed.scopes else None
    return {"scope": scope, "managed_by": by, **policy.to_dict()}


async def put_policy(request: web.Request) -> web.Response:
    scope = parse_scope(request.match_info["scope"])
    policy = parse_policy(await read_json(request))
    stored = await request.app[GATEWAY].store.put_policy(scope, policy)
    return dump(policy_view(scope, stored, ConfigPolicies()))


async def get_policy(request: web.Request) -> web.Response:
    scope = parse_scope(request.match_info["scope"])
    store = request.app[GATEWAY].store
    policy = await store.get_policy(scope)
    if policy is None:
        raise NotFound(f"no policy on {scope}")
    return dump(policy_view(scope, policy, await store.config_policies()))


async def delete_policy(request: web.Request) -> web.Response:
    scope = parse_scope(request.match_info["scope"])
    await request.app[GATEWAY].store.delete_policy(scope)
    return dump({"scope": scope, "deleted": True})


async def list_policies(request: web.Request) -> web.Response:
    keys = request.query.get("keys", "true")
    if keys not in ("true", "false"):
        raise invalid_request("keys must be true or false", "keys")
    store = request.app[GATEWAY].store
    policies = await store.list_policies(keys=keys == "true")
    managed = await store.config_policies()
    return dump({"policies": [policy_view(s, p, managed) for s, p in policies.items()]})


async def usage(request: web.Request) -> web.Response:
    scope = parse_scope(request.match_info["scope"])
    return dump(await request.app[GATEWAY].store.usage(scope))


async def audit(request: web.Request) -> web.Response:
    scope = request.query.get("scope")
    limit = int_query(request, "limit", 100, MAX_AUDIT)
    entries = await request.app[GATEWAY].store.audit(
        parse_scope(scope) if scope else None, limit)
    return dump({"entries": entries})


async def report(request: web.Request) -> web.Response:
    group_by = request.query.get("group_by", "agent")
    if group_by not in ("key", "agent", "group", "vendor", "model"):
        raise BadRequest("invalid_request", "group_by must be key, agent, group, vendor or model",
                         param="group_by")
    since = request.query.get("since_ms")
    if since is not None and not since.isdigit():
        raise invalid_request("since_ms must be a unix time in milliseconds", "since_ms")
    rows = await request.app[GATEWAY].store.report(group_by, int(since) if since else None)
    return dump({"group_by": group_by, "rows": rows})


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
    return dump({"requested": requested, **found.to_dict(), "base_tier": found.base_tier,
                 "service_tier_default": gw.settings.service_tier_defaults.get(
                     found.provider, found.base_tier)})


async def providers(request: web.Request) -> web.Response:
    """Every endpoint the gateway sends to, by its circuit breaker. Each worker process has
    breakers of its own: the answer is the view of the one that answered (`worker`)."""
    gw = request.app[GATEWAY]
    return dump({"worker": os.getpid(), "providers": [
        {"kind": kind, "provider": h.provider, "base_url": h.base_url, "weight": h.weight,
         "state": h.state.value, "consecutive_failures": h.consecutive_failures}
        for kind, upstream in (("llm", gw.upstream), ("vendor", gw.vendors))
        for h in upstream.health()]})


async def openapi(_: web.Request) -> web.Response:
    return dump(openapi_document())


def add_admin_routes(app: web.Application) -> None:
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
    r.add_get(f"{PREFIX}/agents", list_agents)
    r.add_get(f"{PREFIX}/groups", list_groups)
    r.add_get(f"{PREFIX}/policies", list_policies)
    r.add_put(f"{PREFIX}/policies/{{scope}}", put_policy)
    r.add_get(f"{PREFIX}/policies/{{scope}}", get_policy)
    r.add_delete(f"{PREFIX}/policies/{{scope}}", delete_policy)
    r.add_get(f"{PREFIX}/usage/{{scope}}", usage)
    r.add_get(f"{PREFIX}/audit", audit)
    r.add_get(f"{PREFIX}/reports", report)
    r.add_get(f"{PREFIX}/prices", prices)
    r.add_get(f"{PREFIX}/prices/{{model}}", price_of)
    r.add_get(f"{PREFIX}/providers", providers)
    add_approval_routes(app)
    add_webhook_routes(app)
    add_access_routes(app)
