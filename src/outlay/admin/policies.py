"""Policies through the admin API: PUT replaces (saying what it removed, refusing to drop a
budget unless asked), PATCH changes only the fields it names; both refuse an allow-list
model that is neither priced nor an alias, and warn about a scope that names nothing yet."""

from __future__ import annotations

import difflib
from typing import Any

from aiohttp import web

from outlay.admin.common import dump, read_json
from outlay.gateway.context import GATEWAY, Gateway
from outlay.policy.errors import BadRequest, OutlayError, invalid_request
from outlay.policy.model import (
    Budget,
    Policy,
    PolicyError,
    check_scope_policy,
    parse_policy,
    parse_scope,
)
from outlay.pricing.table import PriceTable
from outlay.state.base import NotFound
from outlay.state.config_policies import ConfigPolicies

__all__ = ["check_downgrades", "check_models", "delete_policy", "get_policy", "list_policies",
           "patch_policy", "policy_view", "put_policy", "scope_warning"]

_GLOB = frozenset("*?[")


class BudgetDropped(OutlayError):
    status = 409
    error_type = "admin_error"


def policy_view(scope: str, policy: Policy, managed: ConfigPolicies) -> dict[str, Any]:
    """A policy as answered: its scope, the configuration file that manages it (null: the
    admin API does), and its fields."""
    by = (managed.file or "the configuration file") if scope in managed.scopes else None
    return {"scope": scope, "managed_by": by, **policy.to_dict()}


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise invalid_request(f"{name} must be true or false", name)
    return value == "true"


def check_models(gw: Gateway, policy: Policy, allow_unpriced: bool) -> None:
    """Refuse an allow-list naming a model that is neither priced nor an alias (a typo
    would refuse every call), naming the nearest known names; globs are taken as written."""
    if allow_unpriced or not policy.models:
        return
    known = [*gw.prices.names(), *gw.prices.aliases()]
    for model in policy.models:
        if _GLOB & set(model) or gw.prices.resolve(model) is not None:
            continue
        nearest = difflib.get_close_matches(model, known, n=3, cutoff=0.6)
        hint = f"; nearest known: {', '.join(nearest)}" if nearest else ""
        raise BadRequest(
            "invalid_request",
            f"models: {model!r} is neither a priced model nor an alias{hint}. Pass "
            "allow_unpriced=true (outlay policy … --allow-unpriced) to allow it anyway.",
            param="models", model=model, nearest=nearest)


async def scope_warning(gw: Gateway, scope: str) -> str | None:
    """A warning when `scope` names no agent, group, key or vendor that exists yet."""
    kind, _, name = scope.partition(":")
    store = gw.store
    if kind == "agent":
        found = any(a["name"] == name for a in await store.list_agents())
    elif kind == "group":
        found = any(g["name"] == name for g in await store.list_groups())
    elif kind == "key":
        try:
            await store.get_key(name)
            found = True
        except NotFound:
            found = False
    elif kind == "vendor":
        found = name in gw.vendor_pricing or name in gw.routing.specs
    else:
        return None
    if found:
        return None
    what = {"agent": "agent", "group": "group", "key": "key", "vendor": "configured vendor"}
    return (f"{scope} names no {what[kind]} yet: the policy is stored and applies once "
            "one exists; check the name for a typo")


def _dropped(old: Policy | None, new: Policy) -> list[Budget]:
    """The budgets of `old` that `new` has none of the same period, mode and flow for (a
    budget whose cap or warning changes is kept, not dropped)."""
    kept = {(b.period, b.mode, b.flow) for b in new.budgets}
    return [b for b in (old.budgets if old else ())
            if (b.period, b.mode, b.flow) not in kept]


def _removed(old: Policy | None, new: Policy) -> dict[str, Any]:
    """What `old` has that `new` drops: fields by value, and the budgets it loses."""
    if old is None:
        return {}
    before, after = old.to_dict(), new.to_dict()
    removed = {name: value for name, value in before.items()
               if name not in after and name != "budgets"}
    lost = [b.to_dict() for b in _dropped(old, new)]
    if lost:
        removed["budgets"] = lost
    return removed


def check_downgrades(policy: Policy, prices: PriceTable) -> None:
    """Each model a budget downgrades to is priced, and none dearer than the one before."""
    for i, budget in enumerate(policy.budgets):
        before: tuple[str, int] | None = None
        for model in budget.downgrade_to:
            price = prices.resolve(model)
            where = f"budgets[{i}].on_exceeded.downgrade_to"
            if price is None:
                raise PolicyError(f"{where}: no price is known for {model!r}; a call can be "
                                  "sent only to a model Outlay can price")
            cost = price.input_micros_per_mtok + price.output_micros_per_mtok
            if before is not None and cost > before[1]:
                raise PolicyError(f"{where}: {model!r} is dearer than {before[0]!r} before "
                                  "it; list cheaper models, cheapest last")
            before = (model, cost)


async def _store_policy(request: web.Request, scope: str, policy: Policy,
                        old: Policy | None) -> web.Response:
    gw = request.app[GATEWAY]
    check_models(gw, policy, _flag(request, "allow_unpriced"))
    check_scope_policy(scope, policy)
    check_downgrades(policy, gw.prices)
    removed = _removed(old, policy)
    dropped = _dropped(old, policy)
    if dropped and not _flag(request, "drop_budgets"):
        raise BudgetDropped(
            "budget_would_be_dropped",
            f"This would remove {len(dropped)} budget(s) from {scope}: "
            + ", ".join(f"${b.to_dict()['usd']}/{b.period} {b.mode}" for b in dropped)
            + ". Use PATCH (outlay policy update) to change other fields and keep them, or "
            "pass drop_budgets=true (outlay policy set … --yes) to remove them.",
            param="budgets", scope=scope, budgets=[b.to_dict() for b in dropped])
    stored = await gw.store.put_policy(scope, policy)
    answer: dict[str, Any] = {**policy_view(scope, stored, ConfigPolicies()),
                              "removed": removed}
    warning = await scope_warning(gw, scope)
    if warning:
        answer["warning"] = warning
    return dump(answer)


async def put_policy(request: web.Request) -> web.Response:
    scope = parse_scope(request.match_info["scope"])
    store = request.app[GATEWAY].store
    policy = parse_policy(await read_json(request, None), request.app[GATEWAY].vendor_pricing)
    (await store.config_policies()).check(scope)
    return await _store_policy(request, scope, policy, await store.get_policy(scope))


async def patch_policy(request: web.Request) -> web.Response:
    """The stored policy with the fields the body names changed (null removes one)."""
    scope = parse_scope(request.match_info["scope"])
    store = request.app[GATEWAY].store
    changes = await read_json(request, None)
    vendors = request.app[GATEWAY].vendor_pricing
    # names the bad field
    parse_policy({k: v for k, v in changes.items() if v is not None}, vendors)
    (await store.config_policies()).check(scope)
    old = await store.get_policy(scope)
    merged = {**(old.to_dict() if old else {}), **changes}
    policy = parse_policy({k: v for k, v in merged.items() if v is not None}, vendors)
    return await _store_policy(request, scope, policy, old)


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
