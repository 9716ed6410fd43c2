"""Agents and the keys that create them: `POST /agents` makes a new agent only (409 for one
that exists), `PATCH /agents/{name}` moves it between groups, a key for an agent that does
not exist yet creates it and says so; every new agent gets the configuration's
`default_policy`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from outlay.admin.common import dump, read_json
from outlay.admin.policies import check_models
from outlay.gateway.context import GATEWAY, Gateway
from outlay.policy.decide import iso
from outlay.policy.errors import OutlayError, invalid_request
from outlay.policy.model import Policy, check_scope_policy, parse_policy
from outlay.state.base import KeyRecord, NewKey, NotFound

__all__ = ["create_agent", "create_key", "key_view", "labels", "update_agent"]

MAX_TTL_S = 10 * 366 * 86_400  # longer is no expiry at all: omit ttl_seconds for that
KEY_FIELDS = ("agent", "name", "ttl_seconds", "labels", "policy")


class AgentExists(OutlayError):
    status = 409
    error_type = "admin_error"


def labels(value: object) -> dict[str, str] | None:
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


async def _agent(gw: Gateway, name: str) -> dict[str, Any] | None:
    return next((a for a in await gw.store.list_agents() if a["name"] == name), None)


async def _default_policy(gw: Gateway, agent: str) -> bool:
    """Give a new agent the configuration's `default_policy` (unless the file sets or the
    admin API already stored one for it); whether it was given."""
    raw = gw.settings.default_policy
    scope = f"agent:{agent}"
    if raw is None or scope in (await gw.store.config_policies()).scopes:
        return False
    if await gw.store.get_policy(scope) is not None:
        return False
    await gw.store.put_policy(scope, parse_policy(dict(raw)))
    return True


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid_request(f"{field} must be a non-empty string", field)
    return value


async def create_agent(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await read_json(request, ("name", "group"))
    name = _name(body.get("name"), "name")
    group = None if body.get("group") is None else _name(body.get("group"), "group")
    found = await _agent(gw, name)
    if found is not None:
        raise AgentExists(
            "agent_exists", f"Agent {name} already exists (group {found['group']}); move it "
            f"to another group with PATCH /admin/v1/agents/{name} (outlay agents update).",
            param="name", agent=found)
    # the policy first: the agent is never without its caps, even for a moment
    given = await _default_policy(gw, name)
    created = await gw.store.create_agent(name, group)
    return dump({**created, "default_policy": given}, 201)


async def update_agent(request: web.Request) -> web.Response:
    """Move an agent to another group (`group: null` takes it out of its group)."""
    gw = request.app[GATEWAY]
    name = request.match_info["name"]
    body = await read_json(request, ("group",))
    if "group" not in body:
        raise invalid_request("group is required: the group to move the agent to", "group")
    group = None if body["group"] is None else _name(body["group"], "group")
    if await _agent(gw, name) is None:
        raise NotFound(f"no agent {name}")
    if group is None:
        raise invalid_request("taking an agent out of every group is not supported; "
                              "move it to another group", "group")
    return dump(await gw.store.create_agent(name, group))


def key_policy(request: web.Request, body: dict[str, Any]) -> Policy | None:
    """The policy a key's create or update body gives (None: none given), checked as a
    key's: fields a key scope takes, models priced or insisted on (`allow_unpriced`)."""
    if body.get("policy") is None:
        return None
    gw = request.app[GATEWAY]
    policy = parse_policy(body["policy"], gw.vendor_pricing)
    check_scope_policy("key:", policy)
    check_models(gw, policy, request.query.get("allow_unpriced") == "true")
    return policy


async def create_key(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await read_json(request, KEY_FIELDS)
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
    policy = key_policy(request, body)
    key_labels = labels(body.get("labels")) or {}
    created = await _agent(gw, agent) is None
    given = await _default_policy(gw, agent) if created else False
    record, secret = await gw.store.create_key(NewKey(
        agent=agent, name=name, ttl_seconds=ttl, labels=key_labels, policy=policy))
    return dump({**key_view(record), "key": secret, "agent_created": created,
                 "default_policy": given}, 201)
