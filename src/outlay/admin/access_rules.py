"""The access table of the admin API: for every route (by its path pattern), the role a
read (GET) and a write (any other method) need, how to find the target a scoped token must
cover, and which rows of a listing a scoped token sees. A route missing from the table is
open to unscoped admins only; tests/admin/test_admin_access.py walks the router to keep
every route in it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from outlay.admin.common import PREFIX
from outlay.admin.fleet import Fleet, Member, Target
from outlay.policy.admin_roles import Principal, Role
from outlay.policy.errors import invalid_request
from outlay.policy.model import PolicyError, parse_scope

Resolve = Callable[[web.Request, Fleet], Awaitable[Target | None]]
RowMembers = Callable[[dict[str, Any], Fleet], Awaitable[tuple[Member, ...]]]


@dataclass(frozen=True)
class Rows:
    """A listing's rows, under `field` of the answer; `members` says whose each one is."""

    field: str
    members: RowMembers


@dataclass(frozen=True)
class Rule:
    read: Role = "admin"
    write: Role = "admin"
    target: Resolve | None = None  # what a call acts on
    new: Resolve | None = None  # what a write to a collection (a create) acts on
    created: Callable[[dict[str, Any]], str] | None = None  # a create's target, from its answer
    rows: Rows | None = None  # a listing a scoped token sees part of
    fleetless_ok: bool = False  # data of no fleet (prices, providers) a scoped token may read
    # why a scoped token may not make this call at all (a report across fleets), if it may not
    scoped_refusal: Callable[[web.Request], str | None] | None = None


ADMIN_ONLY = Rule()


# -- targets ----------------------------------------------------------------------------

async def _key(request: web.Request, fleet: Fleet) -> Target:
    key_id = request.match_info["id"]
    member = await fleet.key(key_id)
    return Target(f"key:{key_id}", (member,) if member else ())


async def _agent(request: web.Request, fleet: Fleet) -> Target:
    name = request.match_info["name"]
    return Target(f"agent:{name}", ((name, await fleet.group_of(name)),))


async def _group(request: web.Request, fleet: Fleet) -> Target:
    name = request.match_info["name"]
    return Target(f"group:{name}", ((None, name),))


async def _policy(request: web.Request, fleet: Fleet) -> Target:
    return await fleet.scope_target(parse_scope(request.match_info["scope"]), "policy:")


async def _usage(request: web.Request, fleet: Fleet) -> Target:
    return await fleet.scope_target(parse_scope(request.match_info["scope"]), "usage:")


async def _audit(request: web.Request, fleet: Fleet) -> Target | None:
    scope = request.query.get("scope")
    return None if not scope else await fleet.scope_target(parse_scope(scope), "audit:")


async def _approval(request: web.Request, fleet: Fleet) -> Target:
    approval_id = request.match_info["id"]
    try:
        approval = await fleet.store.get_approval(approval_id)
    except LookupError:
        return Target(f"approval:{approval_id}")
    agent = approval.get("agent")
    return Target(f"approval:{approval_id}",
                  ((agent, await fleet.group_of(agent)),) if agent else ())


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


async def _new_key(request: web.Request, fleet: Fleet) -> Target:
    """A key is minted for an agent: the agent must be within the token's scopes."""
    agent = (await _body(request)).get("agent")
    if not isinstance(agent, str) or not agent:
        raise invalid_request("agent is required: the name of the agent that owns the key",
                              "agent")
    return Target(f"agent:{agent}", ((agent, await fleet.group_of(agent)),))


async def _new_agent(request: web.Request, fleet: Fleet) -> Target:
    """An agent made or moved: where it is now and where it goes must both be covered."""
    body = await _body(request)
    name, group = body.get("name"), body.get("group")
    if not isinstance(name, str) or not name:
        raise invalid_request("name is required", "name")
    if group is not None and (not isinstance(group, str) or not group):
        raise invalid_request("group must be a non-empty string", "group")
    return await _agent_going(fleet, name, group, await fleet.agent_exists(name))


async def _moved_agent(request: web.Request, fleet: Fleet) -> Target:
    """An agent moved to another group: where it is and where it goes must both be covered."""
    group = (await _body(request)).get("group")
    return await _agent_going(fleet, request.match_info["name"],
                              group if isinstance(group, str) and group else None, True)


async def _agent_going(fleet: Fleet, name: str, group: str | None, exists: bool) -> Target:
    """An agent and the group it goes to (None: stays where it is), and, when it exists,
    the group it leaves: a token must cover every one."""
    now = await fleet.group_of(name)
    members: tuple[Member, ...] = ((name, group if group is not None else now),)
    if exists:
        members += ((name, now),)
    return Target(f"agent:{name}", members)


def _fleetless(kind: str, key: str = "id") -> Resolve:
    async def resolve(request: web.Request, _: Fleet) -> Target:
        return Target(f"{kind}:{request.match_info[key]}")
    return resolve


# -- rows of listings -------------------------------------------------------------------

async def _row_agent(row: dict[str, Any], fleet: Fleet) -> tuple[Member, ...]:
    agent = row.get("agent") or row.get("name")
    if "group" in row:
        return ((agent, row["group"]),)
    return ((agent, await fleet.group_of(agent) if agent else None),)


async def _row_group(row: dict[str, Any], _: Fleet) -> tuple[Member, ...]:
    return ((None, row.get("name")),)


async def _row_policy(row: dict[str, Any], fleet: Fleet) -> tuple[Member, ...]:
    return (await fleet.scope_target(row["scope"])).members


async def _row_report(row: dict[str, Any], fleet: Fleet) -> tuple[Member, ...]:
    if "key" in row:
        await fleet.load_keys()
        member = await fleet.key(row["key"]) if row["key"] else None
        return (member,) if member else ()
    if "agent" in row:
        return ((row["agent"], await fleet.group_of(row["agent"])),) if row["agent"] else ()
    if "group" in row:
        return ((None, row["group"]),) if row["group"] else ()
    return ()


def _report_across_fleets(request: web.Request) -> str | None:
    if request.query.get("group_by", "agent") in ("key", "agent", "group"):
        return None
    return ("a report by vendor, model or label sums every fleet: group_by key, agent or "
            "group")


async def _series(request: web.Request, fleet: Fleet) -> Target:
    """A series is of one scope: a scoped token's must be within it."""
    try:
        scope = parse_scope(request.query.get("scope", "global"))
    except PolicyError as err:
        raise invalid_request(str(err), "scope") from None
    return await fleet.scope_target(scope, "series:")


def _id_of(answer: dict[str, Any]) -> str:
    return str(answer.get("id"))


P = PREFIX
VIEW: Role = "viewer"
OPERATE: Role = "operator"
RULES: dict[str, Rule] = {
    f"{P}/keys": Rule(VIEW, OPERATE, new=_new_key, created=lambda a: f"key:{a.get('id')}",
                      rows=Rows("keys", _row_agent)),
    f"{P}/keys/{{id}}": Rule(VIEW, OPERATE, _key),
    f"{P}/keys/{{id}}/revoke": Rule(VIEW, OPERATE, _key),
    f"{P}/agents": Rule(VIEW, OPERATE, new=_new_agent,
                        created=lambda a: f"agent:{a.get('name')}",
                        rows=Rows("agents", _row_agent)),
    f"{P}/agents/{{name}}": Rule(VIEW, OPERATE, _moved_agent),
    f"{P}/agents/{{name}}/revoke": Rule(VIEW, OPERATE, _agent),
    f"{P}/groups": Rule(VIEW, OPERATE, rows=Rows("groups", _row_group)),
    f"{P}/groups/{{name}}/revoke": Rule(VIEW, OPERATE, _group),
    f"{P}/policies": Rule(VIEW, OPERATE, rows=Rows("policies", _row_policy)),
    f"{P}/policies/{{scope}}": Rule(VIEW, OPERATE, _policy),
    f"{P}/usage/{{scope}}": Rule(VIEW, OPERATE, _usage),
    f"{P}/audit": Rule(VIEW, OPERATE, _audit),  # without ?scope=: admin/scoped_reads.py
    f"{P}/reports": Rule(VIEW, OPERATE, rows=Rows("rows", _row_report),
                         scoped_refusal=_report_across_fleets),
    f"{P}/reports/series": Rule(VIEW, OPERATE, _series),
    f"{P}/prices": Rule(VIEW, "admin", fleetless_ok=True),
    f"{P}/prices/{{model}}": Rule(VIEW, "admin", fleetless_ok=True),
    f"{P}/providers": Rule(VIEW, "admin", fleetless_ok=True),
    f"{P}/approvals": Rule(VIEW, OPERATE, rows=Rows("approvals", _row_agent)),
    f"{P}/approvals/{{id}}": Rule(VIEW, OPERATE, _approval),
    f"{P}/approvals/{{id}}/approve": Rule(VIEW, OPERATE, _approval),
    f"{P}/approvals/{{id}}/deny": Rule(VIEW, OPERATE, _approval),
    f"{P}/webhooks": Rule(created=lambda a: f"webhook:{_id_of(a)}"),
    f"{P}/webhooks/{{id}}": Rule(target=_fleetless("webhook")),
    f"{P}/webhooks/{{id}}/rotate": Rule(target=_fleetless("webhook")),
    f"{P}/webhooks/{{id}}/enable": Rule(target=_fleetless("webhook")),
    f"{P}/webhooks/{{id}}/test": Rule(target=_fleetless("webhook")),
    f"{P}/webhooks/{{id}}/deliveries": Rule(target=_fleetless("webhook")),
    f"{P}/deliveries": ADMIN_ONLY,
    f"{P}/admin-tokens": Rule(created=lambda a: f"admin-token:{_id_of(a)}"),
    f"{P}/admin-tokens/{{id}}/revoke": Rule(target=_fleetless("admin-token")),
    # filtered by the store to the token's scopes (admin/tokens.py)
    f"{P}/admin-audit": Rule(VIEW, "admin", fleetless_ok=True),
    f"{P}/whoami": Rule(VIEW, "admin", fleetless_ok=True),
}


def rule_for(request: web.Request) -> Rule:
    resource = request.match_info.route.resource
    return RULES.get(resource.canonical if resource else "", ADMIN_ONLY)


def needed_role(rule: Rule, method: str) -> Role:
    return rule.read if method in ("GET", "HEAD") else rule.write


async def visible_rows(principal: Principal, rows: Rows, answer: dict[str, Any],
                       fleet: Fleet) -> dict[str, Any]:
    """The answer with only the rows within the token's scopes."""
    kept = [row for row in answer.get(rows.field, [])
            if (members := await rows.members(row, fleet))
            and all(principal.covers(a, g) for a, g in members)]
    return {**answer, rows.field: kept}


async def scoped_audit(request: web.Request, principal: Principal, store: Any,
                       limit: int) -> dict[str, Any]:
    """The ledger audit a scoped token sees without `?scope=`: the newest `limit` entries
    of its agents and groups, merged."""
    entries: dict[str, dict[str, Any]] = {}
    for scope in principal.scopes:
        for entry in await store.audit(scope, limit):
            entries.setdefault(entry["request_id"], entry)
    newest = sorted(entries.values(), key=lambda e: e["time"], reverse=True)
    return {"entries": newest[:limit]}
