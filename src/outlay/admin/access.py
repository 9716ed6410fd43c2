"""Access control of the admin API, in one layer in front of every admin route: who the
token is (and failed attempts counted per address), whether its role and scopes allow the
call (by the table in `access_rules.py`), a scoped token's view of listings, and the admin
audit of every write, with the target's value before and after."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from outlay.admin.access_rules import (
    RULES,
    Rule,
    needed_role,
    rule_for,
    scoped_audit,
    visible_rows,
)
from outlay.admin.auth_limit import FailedAuthLimit
from outlay.admin.common import PREFIX, dump, int_query
from outlay.admin.fleet import Fleet, Target, snapshot
from outlay.gateway.context import GATEWAY
from outlay.policy.admin_roles import Principal, role_allows
from outlay.policy.errors import AuthError, NotAllowed, OutlayError, RateLimited
from outlay.policy.model import PolicyError
from outlay.state.access import AccessStore, AdminWrite, root_principal
from outlay.state.base import StateError, StateStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL = web.RequestKey("admin_principal", Principal)
AUTH_LIMIT = web.AppKey("admin_auth_limit", FailedAuthLimit)
MAX_AUDIT = 1000
log = logging.getLogger("outlay.admin")


def install(app: web.Application) -> None:
    app[AUTH_LIMIT] = FailedAuthLimit(time.monotonic,
                                      app[GATEWAY].settings.admin_auth_failures)


def forbidden(message: str, missing: str) -> NotAllowed:
    return NotAllowed("forbidden", message, missing=missing)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def access_store(store: StateStore) -> AccessStore:
    if not isinstance(store, AccessStore):
        error = OutlayError("not_supported", "This state backend keeps no admin tokens.")
        error.status = 501
        raise error
    return store


async def authenticate(request: web.Request, scheme: str, token: str) -> Principal:
    """The admin token a request presents; AuthError (401) when it is missing, unknown or
    revoked, RateLimited (429) while its address has failed too often."""
    limit = request.app[AUTH_LIMIT]
    address = request.remote or "unknown"
    retry = limit.retry_after(address)
    if retry is not None:
        raise RateLimited("rate_limited", f"Too many failed admin authentications from this "
                          f"address; try again in {retry} s.", retry_after=retry)
    store = request.app[GATEWAY].store
    principal: Principal | None = None
    if scheme.lower() == "bearer" and token:
        if isinstance(store, AccessStore):
            principal = await store.admin_principal(token)
        elif await store.admin_token_ok(token):
            principal = root_principal()
    if principal is None:
        limit.failed(address)
        raise AuthError("invalid_admin_token", "A valid admin token is required "
                        "(Authorization: Bearer <OUTLAY_ADMIN_TOKEN>, or an admin token "
                        "made with POST /admin/v1/admin-tokens).")
    return principal


async def authorize(request: web.Request, principal: Principal, handler: Handler
                    ) -> web.StreamResponse:
    """Run `handler` if the token may make this call; record it when it is a write."""
    request[PRINCIPAL] = principal
    if request.match_info.http_exception is not None:  # no such route: the handler says so
        return await handler(request)
    rule, method = rule_for(request), request.method
    route = request.match_info.route.resource
    pattern = route.canonical if route else request.path
    needed = needed_role(rule, method)
    if not role_allows(principal.role, needed):
        raise forbidden(f"This admin token ({principal.name}) has role {principal.role}; "
                        f"{method} {pattern} needs role {needed}.", "role")
    store = request.app[GATEWAY].store
    fleet = Fleet(store)
    target = await _target(request, rule, fleet, principal)
    if principal.scoped:
        special = await _scoped_read(request, rule, principal, target, store)
        if special is not None:
            return special
    write = method not in ("GET", "HEAD")
    before = await snapshot(store, target) if write else None
    response = await handler(request)
    if write and response.status < 400:
        await _record(store, principal, f"{method} {pattern}", rule, target, before, response)
    if principal.scoped and rule.rows is not None and response.status == 200:
        answer = _answer(response)
        if answer is not None:
            return dump(await visible_rows(principal, rule.rows, answer, fleet))
    return response


async def _target(request: web.Request, rule: Rule, fleet: Fleet, principal: Principal
                  ) -> Target | None:
    resolve = rule.target if request.method in ("GET", "HEAD") else rule.new or rule.target
    if resolve is None:
        return None
    try:
        return await resolve(request, fleet)
    except (OutlayError, PolicyError):
        if principal.scoped:  # judged before anything is done for a scoped token
            raise
        return None  # the handler refuses the same input, naming the field


async def _scoped_read(request: web.Request, rule: Rule, principal: Principal,
                       target: Target | None, store: StateStore) -> web.Response | None:
    """Refuse what a scoped token may not reach; answer the reads it sees only part of
    that a filter cannot (the ledger audit without `?scope=`); None: go on."""
    outside = (f"This admin token ({principal.name}) is scoped to {principal.scope_text()}")
    refusal = rule.scoped_refusal(request) if rule.scoped_refusal else None
    if refusal:
        raise forbidden(f"{outside}: {refusal}.", "scope")
    if target is not None:
        if not target.within(principal):
            raise forbidden(f"{outside}; {target.name} is outside them.", "scope")
        return None
    if rule is RULES[f"{PREFIX}/audit"] and request.method == "GET":
        limit = int_query(request, "limit", 100, MAX_AUDIT)
        return dump(await scoped_audit(request, principal, store, limit))
    if rule.rows is None and not rule.fleetless_ok:
        raise forbidden(f"{outside}; {request.method} {request.path} reaches every fleet.",
                        "scope")
    return None


def _answer(response: web.StreamResponse) -> dict[str, Any] | None:
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) else None


async def _record(store: StateStore, principal: Principal, action: str, rule: Rule,
                  target: Target | None, before: Any, response: web.StreamResponse) -> None:
    """One row of the admin audit: the token, the route, the target and its value before
    and after. A write whose row cannot be stored is logged, not undone."""
    if not isinstance(store, AccessStore):
        return
    answer = _answer(response) or {}
    name = target.name if target is not None else action
    after_of = target
    if rule.created is not None:
        name = rule.created(answer)
        after_of = Target(name)
        before = None
    after = await snapshot(store, after_of)
    if after is None and after_of is None:
        after = {k: v for k, v in answer.items() if k not in ("key", "token", "secret")}
    write = AdminWrite(principal.id, principal.name, action, name,
                       target.agent if target else None, target.group if target else None,
                       before, after, response.status)
    try:
        await store.record_admin_write(write)
    except StateError:
        log.exception("an admin write (%s on %s by %s) could not be recorded in the admin "
                      "audit", action, name, principal.name)
