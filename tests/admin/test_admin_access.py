"""Every admin route, every role, a target inside and outside the token's scopes: the
answer is allowed, 403 `forbidden` (naming the role or the scope missing) or 401, and an
allowed answer to a scoped token never holds another fleet's rows.

The routes are read from the application's router: a route added without a line in
EXPECTED (the role it needs) and CASES (its targets) fails `test_every_route_is_covered`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from outlay.admin.access_rules import RULES

from .harness import ADMIN_TOKEN, Admin

P = "/admin/v1"
PUBLIC = {("GET", f"{P}/openapi.json")}
V, OP, A = "viewer", "operator", "admin"

# the role each route needs: the contract (viewer reads usage, audit, reports,
# policies; operator also mints, updates and revokes keys, sets policies, decides approvals;
# admin everything, admin tokens and webhooks included)
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", f"{P}/keys"): V, ("POST", f"{P}/keys"): OP,
    ("GET", f"{P}/keys/{{id}}"): V, ("PATCH", f"{P}/keys/{{id}}"): OP,
    ("POST", f"{P}/keys/{{id}}/revoke"): OP,
    ("GET", f"{P}/agents"): V, ("POST", f"{P}/agents"): OP,
    ("POST", f"{P}/agents/{{name}}/revoke"): OP, ("PATCH", f"{P}/agents/{{name}}"): OP,
    ("GET", f"{P}/groups"): V, ("POST", f"{P}/groups/{{name}}/revoke"): OP,
    ("GET", f"{P}/policies"): V, ("GET", f"{P}/policies/{{scope}}"): V,
    ("PUT", f"{P}/policies/{{scope}}"): OP, ("DELETE", f"{P}/policies/{{scope}}"): OP,
    ("PATCH", f"{P}/policies/{{scope}}"): OP,
    ("GET", f"{P}/usage/{{scope}}"): V, ("GET", f"{P}/audit"): V, ("GET", f"{P}/reports"): V,
    ("GET", f"{P}/reports/series"): V,
    ("GET", f"{P}/prices"): V, ("GET", f"{P}/prices/{{model}}"): V, ("GET", f"{P}/providers"): V,
    ("GET", f"{P}/approvals"): V, ("GET", f"{P}/approvals/{{id}}"): V,
    ("POST", f"{P}/approvals/{{id}}/approve"): OP, ("POST", f"{P}/approvals/{{id}}/deny"): OP,
    ("GET", f"{P}/webhooks"): A, ("POST", f"{P}/webhooks"): A,
    ("GET", f"{P}/webhooks/{{id}}"): A, ("DELETE", f"{P}/webhooks/{{id}}"): A,
    ("POST", f"{P}/webhooks/{{id}}/rotate"): A, ("POST", f"{P}/webhooks/{{id}}/enable"): A,
    ("POST", f"{P}/webhooks/{{id}}/test"): A, ("GET", f"{P}/webhooks/{{id}}/deliveries"): A,
    ("GET", f"{P}/deliveries"): A,
    ("GET", f"{P}/admin-tokens"): A, ("POST", f"{P}/admin-tokens"): A,
    ("POST", f"{P}/admin-tokens/{{id}}/revoke"): A,
    ("GET", f"{P}/admin-audit"): V, ("GET", f"{P}/whoami"): V,
}


@dataclass
class World:
    """Two fleets: `in-agent` in group fleet-a (the scoped tokens' fleet) and `out-agent`
    in fleet-b, each with a key, ledger rows, a pending approval and policies; a webhook
    endpoint and a spare admin token; and the admin tokens under test."""

    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, tuple[str, bool]] = field(default_factory=dict)  # secret, role, scoped

    def leaks(self) -> list[str]:
        """What an answer to a fleet-a token must never contain."""
        return ["out-agent", "fleet-b", self.ids["out_key"], self.ids["out_approval"]]


async def build_world(admin: Admin) -> World:
    world = World()
    for agent, group in (("in-agent", "fleet-a"), ("out-agent", "fleet-b")):
        side = agent.split("-")[0]
        await admin.call("POST", "agents", {"name": agent, "group": group}, expect=201)
        minted = await admin.mint(agent)
        world.ids[f"{side}_key"] = minted["id"]
        assert (await admin.chat(minted["key"])).status == 200  # a ledger row
        await admin.call("PUT", f"policies/agent:{agent}",
                         {"on_breach": "require_approval", "rpm": 0})
        refused = await admin.chat(minted["key"])
        world.ids[f"{side}_approval"] = (await refused.json())["error"]["approval_id"]
        await admin.call("PUT", f"policies/group:{group}",
                         {"budgets": [{"usd": 50, "period": "day"}]})
    await admin.call("PUT", "policies/global", {"rpm": 10_000})
    hook = await admin.call("POST", "webhooks", {"url": "http://127.0.0.1:9/hook"},
                            expect=201)
    world.ids["webhook"] = hook["id"]
    spare = await admin.call("POST", "admin-tokens", {"name": "spare", "role": "viewer"},
                             expect=201)
    world.ids["spare_token"] = spare["id"]
    for role in (V, OP, A):
        for scoped in (True, False):
            made = await admin.call("POST", "admin-tokens", {
                "name": f"{role}-{'a' if scoped else 'all'}", "role": role,
                "scopes": ["group:fleet-a"] if scoped else []}, expect=201)
            world.tokens[made["token"]] = (role, scoped)
    world.tokens[ADMIN_TOKEN] = (A, False)
    return world


@dataclass(frozen=True)
class Case:
    kind: str  # in | out | list | none (of no fleet) | fleetless (global reference data)
    path: str  # below /admin/v1/, {name} filled from World.ids
    body: dict[str, Any] | None = None


def _in_out(path: str, inside: str, outside: str, body: Any = None) -> list[Case]:
    return [Case("in", path.format(t=inside), body), Case("out", path.format(t=outside), body)]


CASES: dict[tuple[str, str], list[Case]] = {
    ("GET", f"{P}/keys"): [Case("list", "keys"), Case("list", "keys?limit=5")],
    ("POST", f"{P}/keys"): [Case("in", "keys", {"agent": "in-agent"}),
                            Case("out", "keys", {"agent": "out-agent"}),
                            Case("out", "keys", {"agent": "brand-new-agent"})],
    ("GET", f"{P}/keys/{{id}}"): _in_out("keys/{t}", "{in_key}", "{out_key}"),
    ("PATCH", f"{P}/keys/{{id}}"): _in_out("keys/{t}", "{in_key}", "{out_key}", {"name": "x"}),
    ("POST", f"{P}/keys/{{id}}/revoke"): _in_out("keys/{t}/revoke", "{in_key}", "{out_key}"),
    ("GET", f"{P}/agents"): [Case("list", "agents")],
    ("POST", f"{P}/agents"): [
        Case("in", "agents", {"name": "in-agent-2", "group": "fleet-a"}),
        Case("out", "agents", {"name": "in-agent", "group": "fleet-b"}),  # moved out
        Case("out", "agents", {"name": "out-agent", "group": "fleet-a"}),  # taken in
        Case("out", "agents", {"name": "loose-agent"})],
    ("POST", f"{P}/agents/{{name}}/revoke"): _in_out("agents/{t}/revoke", "in-agent",
                                                      "out-agent"),
    ("PATCH", f"{P}/agents/{{name}}"): [
        Case("in", "agents/in-agent", {"group": "fleet-a"}),
        Case("out", "agents/in-agent", {"group": "fleet-b"}),  # moved out
        Case("out", "agents/out-agent", {"group": "fleet-a"}),  # taken in
        Case("out", "agents/out-agent", {"group": "fleet-b"})],
    ("GET", f"{P}/groups"): [Case("list", "groups")],
    ("POST", f"{P}/groups/{{name}}/revoke"): _in_out("groups/{t}/revoke", "fleet-a",
                                                      "fleet-b"),
    ("GET", f"{P}/policies"): [Case("list", "policies"), Case("list", "policies?keys=false")],
    ("GET", f"{P}/policies/{{scope}}"): [
        *_in_out("policies/{t}", "group:fleet-a", "group:fleet-b"),
        Case("out", "policies/global")],
    ("PUT", f"{P}/policies/{{scope}}"): [
        *_in_out("policies/{t}", "group:fleet-a", "group:fleet-b", {"rpm": 5}),
        *_in_out("policies/{t}", "key:{in_key}", "key:{out_key}", {"rpm": 5}),
        Case("out", "policies/global", {"rpm": 5}),
        Case("out", "policies/vendor:stripe", {"rpm": 5})],
    ("PATCH", f"{P}/policies/{{scope}}"): [
        *_in_out("policies/{t}", "group:fleet-a", "group:fleet-b", {"rpm": 7}),
        *_in_out("policies/{t}", "key:{in_key}", "key:{out_key}", {"rpm": 7}),
        Case("out", "policies/global", {"rpm": 7})],
    ("DELETE", f"{P}/policies/{{scope}}"): [
        *_in_out("policies/{t}", "group:fleet-a", "group:fleet-b"),
        Case("out", "policies/global")],
    ("GET", f"{P}/usage/{{scope}}"): [
        *_in_out("usage/{t}", "agent:in-agent", "agent:out-agent"),
        Case("out", "usage/group:fleet-b"), Case("out", "usage/global")],
    ("GET", f"{P}/audit"): [
        Case("list", "audit"), *_in_out("audit?scope={t}", "group:fleet-a", "group:fleet-b")],
    ("GET", f"{P}/reports"): [
        Case("list", "reports?group_by=agent"), Case("list", "reports?group_by=key"),
        Case("list", "reports?group_by=group"), Case("out", "reports?group_by=vendor"),
        Case("out", "reports?group_by=model"), Case("out", "reports?group_by=label:run")],
    ("GET", f"{P}/reports/series"): [
        *_in_out("reports/series?scope={t}", "agent:in-agent", "agent:out-agent"),
        Case("in", "reports/series?scope=group:fleet-a&split=agent"),
        Case("out", "reports/series?scope=global"), Case("out", "reports/series")],
    ("GET", f"{P}/prices"): [Case("fleetless", "prices")],
    ("GET", f"{P}/prices/{{model}}"): [Case("fleetless", "prices/gpt-4o-mini")],
    ("GET", f"{P}/providers"): [Case("fleetless", "providers")],
    ("GET", f"{P}/approvals"): [Case("list", "approvals"),
                                Case("list", "approvals?state=pending")],
    ("GET", f"{P}/approvals/{{id}}"): _in_out("approvals/{t}", "{in_approval}",
                                              "{out_approval}"),
    ("POST", f"{P}/approvals/{{id}}/approve"): _in_out(
        "approvals/{t}/approve", "{in_approval}", "{out_approval}"),
    ("POST", f"{P}/approvals/{{id}}/deny"): _in_out(
        "approvals/{t}/deny", "{in_approval}", "{out_approval}"),
    ("GET", f"{P}/webhooks"): [Case("none", "webhooks")],
    ("POST", f"{P}/webhooks"): [Case("none", "webhooks", {"url": "http://127.0.0.1:9/b"})],
    ("GET", f"{P}/webhooks/{{id}}"): [Case("none", "webhooks/{webhook}")],
    ("DELETE", f"{P}/webhooks/{{id}}"): [Case("none", "webhooks/{webhook}")],
    ("POST", f"{P}/webhooks/{{id}}/rotate"): [Case("none", "webhooks/{webhook}/rotate")],
    ("POST", f"{P}/webhooks/{{id}}/enable"): [Case("none", "webhooks/{webhook}/enable")],
    ("POST", f"{P}/webhooks/{{id}}/test"): [Case("none", "webhooks/{webhook}/test")],
    ("GET", f"{P}/webhooks/{{id}}/deliveries"): [
        Case("none", "webhooks/{webhook}/deliveries")],
    ("GET", f"{P}/deliveries"): [Case("none", "deliveries")],
    ("GET", f"{P}/admin-tokens"): [Case("none", "admin-tokens")],
    ("POST", f"{P}/admin-tokens"): [Case("none", "admin-tokens",
                                         {"name": "more", "role": "viewer"})],
    ("POST", f"{P}/admin-tokens/{{id}}/revoke"): [
        Case("none", "admin-tokens/{spare_token}/revoke")],
    ("GET", f"{P}/admin-audit"): [Case("list", "admin-audit"),
                                  Case("list", "admin-audit?target=agent:out-agent")],
    ("GET", f"{P}/whoami"): [Case("fleetless", "whoami")],
}


def routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(P + "/") and route.method != "HEAD":
            found.add((route.method, path))
    return found - PUBLIC


async def test_every_route_is_covered(admin: Admin) -> None:
    registered = routes(admin.app)
    assert len(registered) >= 38
    assert registered <= set(EXPECTED), sorted(registered - set(EXPECTED))
    assert registered <= set(CASES), sorted(registered - set(CASES))
    # and the access table has every route: none falls back to "unscoped admins only"
    assert {path for _, path in registered} <= set(RULES)


def _route_params() -> list[Any]:
    return [pytest.param(key, id=f"{key[0]} {key[1][len(P):]}") for key in sorted(CASES)]


@pytest.mark.parametrize("route", _route_params())
async def test_route_by_role_and_scope(admin: Admin, route: tuple[str, str]) -> None:
    assert route in routes(admin.app)
    world = await build_world(admin)
    needed = EXPECTED[route]
    method = route[0]
    for case in CASES[route]:
        path = case.path.format(**world.ids)
        # scoped tokens first: an unscoped one may change the fleets (move an agent)
        for token, (role, scoped) in sorted(world.tokens.items(), key=lambda t: not t[1][1]):
            where = f"{method} {path} as {role}{' scoped' if scoped else ''}"
            resp = await admin.client.request(
                method, f"{P}/{path}", json=case.body if method != "GET" else None,
                headers={"Authorization": f"Bearer {token}"})
            text = await resp.text()
            if ROLE_ORDER.index(role) < ROLE_ORDER.index(needed):
                assert (resp.status, _code(text)) == (403, "forbidden"), (where, text)
                assert _missing(text) == "role", (where, text)
                assert needed in _message(text), (where, text)
                continue
            if scoped and case.kind in ("out", "none"):
                assert (resp.status, _code(text)) == (403, "forbidden"), (where, text)
                assert _missing(text) == "scope", (where, text)
                continue
            assert resp.status not in (401, 403), (where, text)
            assert resp.status < 500, (where, text)
            if method == "GET":  # every read above is of something that exists
                assert resp.status == 200, (where, text)
            if scoped and resp.status < 400:
                for leak in world.leaks():
                    assert leak not in text, (where, leak, text)
            if case.kind == "list" and not scoped and path in ("keys", "agents"):
                assert "out-agent" in text  # an unscoped token sees every fleet


async def test_a_wrong_or_revoked_token_is_401_everywhere(admin: Admin) -> None:
    made = await admin.call("POST", "admin-tokens", {"name": "gone", "role": "admin"},
                            expect=201)
    assert (await admin.call("GET", "whoami", token=made["token"]))["name"] == "gone"
    await admin.call("POST", f"admin-tokens/{made['id']}/revoke", {})
    for method, path in sorted(routes(admin.app)):
        filled = path.replace("{id}", "x").replace("{scope}", "global").replace(
            "{name}", "x").replace("{model}", "x")
        for token in (made["token"], "not-a-token"):
            resp = await admin.client.request(method, filled, json={},
                                              headers={"Authorization": f"Bearer {token}"})
            assert resp.status == 401, (method, filled, await resp.text())
            assert _code(await resp.text()) == "invalid_admin_token"


ROLE_ORDER = [V, OP, A]


def _error(text: str) -> dict[str, Any]:
    import json

    body = json.loads(text)
    error: dict[str, Any] = body.get("error") or {}
    return error


def _code(text: str) -> str | None:
    try:
        return _error(text).get("code")
    except ValueError:
        return None


def _missing(text: str) -> str | None:
    return _error(text).get("missing")


def _message(text: str) -> str:
    return str(_error(text).get("message"))
