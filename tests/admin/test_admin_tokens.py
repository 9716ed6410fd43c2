"""Admin tokens through the admin API: made with a role and scopes (the secret shown once),
listed, revoked; bad input refused naming the field; an agent-scoped operator; the admin
audit of writes with before and after; failed authentications limited per address."""

from __future__ import annotations

from typing import Any

from outlay.admin.access import AUTH_LIMIT
from outlay.admin.auth_limit import FailedAuthLimit

from .harness import ADMIN_TOKEN, Admin


async def make(admin: Admin, name: str, role: str, *scopes: str) -> dict[str, Any]:
    made: dict[str, Any] = await admin.call(
        "POST", "admin-tokens", {"name": name, "role": role, "scopes": list(scopes)},
        expect=201)
    return made


async def test_a_token_is_made_listed_and_revoked(admin: Admin) -> None:
    made = await make(admin, "billing-lead", "operator", "group:billing-agents")
    assert made["token"].startswith("oladm_")
    assert (made["name"], made["role"], made["scopes"], made["revoked_at"]) == (
        "billing-lead", "operator", ["group:billing-agents"], None)
    listed = (await admin.call("GET", "admin-tokens"))["admin_tokens"]
    assert [t["id"] for t in listed] == [made["id"]]
    assert "token" not in listed[0]
    me = await admin.call("GET", "whoami", token=made["token"])
    assert (me["name"], me["role"], me["scopes"]) == (
        "billing-lead", "operator", ["group:billing-agents"])
    assert me["can"] == {"viewer": True, "operator": True, "admin": False}
    root = await admin.call("GET", "whoami")
    assert (root["role"], root["scopes"], root["id"]) == ("admin", [], None)
    revoked = await admin.call("POST", f"admin-tokens/{made['id']}/revoke", {})
    assert revoked["revoked_at"] is not None
    error = await admin.call("GET", "whoami", token=made["token"], expect=401)
    assert error["error"]["code"] == "invalid_admin_token"
    await admin.refused("POST", "admin-tokens/adt_none/revoke", {}, status=404,
                        code="not_found")


async def test_bad_token_requests_name_the_field_and_store_nothing(admin: Admin) -> None:
    for body, param in [
        ({"role": "viewer"}, "name"),
        ({"name": "", "role": "viewer"}, "name"),
        ({"name": "x"}, "role"),
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "x", "role": "viewer", "scopes": "group:a"}, "scopes"),
        ({"name": "x", "role": "viewer", "scopes": ["team:a"]}, "scopes"),
        ({"name": "x", "role": "viewer", "scopes": ["group:"]}, "scopes"),
        ({"name": "x", "role": "viewer", "scopes": [7]}, "scopes"),
        ({"name": "x", "role": "viewer", "expires": 1}, "expires"),
    ]:
        error = await admin.refused("POST", "admin-tokens", body)
        assert error["param"] == param, (body, error)
    assert (await admin.call("GET", "admin-tokens"))["admin_tokens"] == []


async def test_an_agent_scoped_operator(admin: Admin) -> None:
    await admin.call("POST", "agents", {"name": "mine", "group": "shared"}, expect=201)
    await admin.call("POST", "agents", {"name": "theirs", "group": "shared"}, expect=201)
    token = (await make(admin, "one-bot", "operator", "agent:mine"))["token"]
    minted = await admin.call("POST", "keys", {"agent": "mine"}, token=token, expect=201)
    await admin.call("PUT", "policies/agent:mine", {"rpm": 5}, token=token)
    await admin.call("PUT", f"policies/key:{minted['id']}", {"rpm": 5}, token=token)
    for method, path, body in [
        ("POST", "keys", {"agent": "theirs"}),
        ("PUT", "policies/group:shared", {"rpm": 1}),  # the group holds other agents
        ("POST", "groups/shared/revoke", {}),
        ("GET", "usage/agent:theirs", None),
    ]:
        error = (await admin.call(method, path, body, token=token, expect=403))["error"]
        assert (error["code"], error["missing"]) == ("forbidden", "scope"), (path, error)
        assert "agent:mine" in error["message"]
    agents = (await admin.call("GET", "agents", token=token))["agents"]
    assert agents == [{"name": "mine", "group": "shared"}]
    keys = (await admin.call("GET", "keys", token=token))["keys"]
    assert [k["id"] for k in keys] == [minted["id"]]


async def test_the_admin_audit_records_before_and_after(admin: Admin) -> None:
    lead = await make(admin, "billing-lead", "operator", "group:billing")
    await admin.call("POST", "agents", {"name": "bot", "group": "billing"}, expect=201)
    await admin.call("PUT", "policies/group:billing", {"rpm": 10}, token=lead["token"])
    await admin.call("PUT", "policies/group:billing", {"rpm": 20}, token=lead["token"])
    minted = await admin.call("POST", "keys", {"agent": "bot"}, token=lead["token"],
                              expect=201)
    await admin.call("DELETE", "policies/group:billing", token=lead["token"])
    entries = (await admin.call("GET", "admin-audit?target=policy:group:billing"))["entries"]
    def rpm(policy: dict[str, Any] | None) -> int | None:
        return None if policy is None else policy["rpm"]

    assert [(rpm(e["before"]), rpm(e["after"])) for e in entries] == [
        (20, None), (10, 20), (None, 10)]
    newest = entries[0]
    assert (newest["token_name"], newest["token_id"], newest["action"], newest["group"]) == (
        "billing-lead", lead["id"], "DELETE /admin/v1/policies/{scope}", "billing")
    assert newest["time"].endswith("Z")
    mint = (await admin.call("GET", f"admin-audit?target=key:{minted['id']}"))["entries"]
    assert len(mint) == 1
    assert (mint[0]["before"], mint[0]["after"]["agent"]) == (None, "bot")
    assert minted["key"] not in str(mint)  # the key's secret is never recorded
    made = (await admin.call("GET", f"admin-audit?target=admin-token:{lead['id']}"))
    assert made["entries"][0]["token_name"] == "admin-token"  # OUTLAY_ADMIN_TOKEN's
    assert lead["token"] not in str(made)
    # the lead sees the writes on its fleet only; nobody can change the trail
    seen = (await admin.call("GET", "admin-audit", token=lead["token"]))["entries"]
    assert {e["group"] for e in seen} == {"billing"}
    assert not any(e["target"].startswith("admin-token:") for e in seen)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        await admin.refused(method, "admin-audit", {}, status=405, code="method_not_allowed")
    assert len((await admin.call("GET", "admin-audit"))["entries"]) == len(
        (await admin.call("GET", "admin-audit?limit=1000"))["entries"])


async def test_a_refused_write_is_not_recorded(admin: Admin) -> None:
    viewer = await make(admin, "looker", "viewer")
    await admin.call("PUT", "policies/global", {"rpm": 1}, token=viewer["token"], expect=403)
    await admin.refused("PUT", "policies/global", {"rpm": "many"}, code="invalid_policy")
    assert (await admin.call("GET", "admin-audit?target=policy:global"))["entries"] == []


async def test_failed_authentications_are_limited_per_address(admin: Admin) -> None:
    now = [0.0]
    limit = admin.app[AUTH_LIMIT]  # as made for the app: moved by the test's clock
    limit.clock, limit.failures = (lambda: now[0]), 3
    for _ in range(3):
        await admin.call("GET", "whoami", token="wrong", expect=401)
    for token in ("wrong", ADMIN_TOKEN):  # past the limit even the right token waits
        resp = await admin.client.get("/admin/v1/whoami",
                                      headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 429
        assert (await resp.json())["error"]["code"] == "rate_limited"
        assert resp.headers["Retry-After"] == "60"
    now[0] = 60.0
    assert (await admin.call("GET", "whoami"))["role"] == "admin"


def test_no_limit_counts_nothing() -> None:
    limit = FailedAuthLimit(lambda: 0.0, failures=0)
    for _ in range(1000):
        limit.failed("10.0.0.1")
    assert (len(limit), limit.retry_after("10.0.0.1")) == (0, None)


def test_the_failure_counts_are_bounded() -> None:
    limit = FailedAuthLimit(lambda: 0.0, failures=2, window_s=60, max_addresses=100)
    for i in range(1000):
        limit.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limit) == 100
    limit.failed("10.0.3.231")  # the newest kept: one more failure reaches the limit
    assert limit.retry_after("10.0.3.231") == 60
    assert limit.retry_after("10.0.0.0") is None  # forgotten
