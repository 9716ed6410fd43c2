"""`outlay admin-tokens …`, `outlay admin-audit` and `outlay whoami` against a fake admin
API: the calls each command makes and what it prints; a refusal names what is missing."""

from __future__ import annotations

from .fakes import FakeAdmin, RunCli

TOKEN = {"id": "adt_01", "name": "billing-lead", "role": "operator",
         "scopes": ["group:billing"], "created_at": "2025-06-15T12:00:00Z",
         "revoked_at": None}
SECRET = "oladm_c2VjcmV0LXNlY3JldC1zZWNyZXQ"


async def test_create_sends_role_and_scopes_and_shows_the_token_once(
        fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/admin-tokens", {**TOKEN, "token": SECRET}, 201)
    result = await run_cli("admin-tokens", "create", "billing-lead", "--role", "operator",
                           "--scope", "group:billing")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"name": "billing-lead", "role": "operator",
                                    "scopes": ["group:billing"]}
    assert result.stdout.count(SECRET) == 1
    assert "operator, group:billing" in result.stdout


async def test_list_and_revoke(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/admin-tokens", {"admin_tokens": [TOKEN]})
    listed = await run_cli("admin-tokens", "list")
    assert listed.exit_code == 0, listed.output
    assert "billing-lead" in listed.stdout
    assert "group:billing" in listed.stdout
    fake_admin.answer("POST", "/admin/v1/admin-tokens/adt_01/revoke",
                      {**TOKEN, "revoked_at": "2025-06-15T13:00:00Z"})
    revoked = await run_cli("admin-tokens", "revoke", "adt_01")
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked admin token adt_01 (billing-lead)." in revoked.stdout


async def test_admin_audit_shows_before_and_after(fake_admin: FakeAdmin,
                                                  run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/admin-audit", {"entries": [{
        "id": 2, "time": "2025-06-15T12:00:00Z", "token_id": "adt_01",
        "token_name": "billing-lead", "action": "PUT /admin/v1/policies/{scope}",
        "target": "policy:group:billing", "agent": None, "group": "billing",
        "before": {"rpm": 10}, "after": {"rpm": 20}, "status": 200}]})
    result = await run_cli("admin-audit", "--target", "policy:group:billing", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"target": "policy:group:billing", "limit": "5"}
    for shown in ("billing-lead", "policy:group:billing", '{"rpm":10}', '{"rpm":20}'):
        assert shown in result.stdout


async def test_whoami_and_a_refusal(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/whoami", {**TOKEN, "can": {}})
    result = await run_cli("whoami")
    assert result.stdout.strip() == "billing-lead: role operator, scopes group:billing"
    fake_admin.answer("GET", "/admin/v1/admin-tokens", {"error": {
        "message": "This admin token (billing-lead) has role operator; GET "
                   "/admin/v1/admin-tokens needs role admin.", "type": "admin_error",
        "code": "forbidden", "param": None, "missing": "role"}}, 403)
    refused = await run_cli("admin-tokens", "list")
    assert refused.exit_code == 1
    assert "needs role admin" in refused.stderr
    assert "HTTP 403 forbidden" in refused.stderr
    assert "outlay whoami" in refused.stderr
