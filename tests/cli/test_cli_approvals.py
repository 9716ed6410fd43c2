"""`outlay approvals …` and `outlay kill` against a fake admin API."""

from __future__ import annotations

from .fakes import FakeAdmin, RunCli

APPROVAL = {
    "id": "apr_01", "state": "pending", "created_at": "2025-06-15T12:00:00Z",
    "key_id": "key_1", "agent": "payer", "scope": "agent:payer", "code": "budget_exceeded",
    "reason": "Budget exceeded", "estimated_usd": "20", "request": {}, "decided_at": None,
    "note": None, "used_by": None,
}


async def test_list_shows_pending_approvals(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/approvals", {"approvals": [APPROVAL]})
    result = await run_cli("approvals", "list", "--state", "pending")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"state": "pending"}
    for text in ("apr_01", "payer", "budget_exceeded", "agent:payer"):
        assert text in result.stdout


async def test_approve_and_deny_send_the_note(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    for verb, state in (("approve", "approved"), ("deny", "denied")):
        fake_admin.answer("POST", f"/admin/v1/approvals/apr_01/{verb}",
                          {**APPROVAL, "state": state})
        result = await run_cli("approvals", verb, "apr_01", "--note", "checked")
        assert result.exit_code == 0, result.output
        assert fake_admin.last.body == {"note": "checked"}
        assert f"now {state}" in result.stdout


async def test_kill_revokes_an_agent(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/agents/payer/revoke",
                      {"agent": "payer", "revoked": ["key_1", "key_2"]})
    result = await run_cli("kill", "--agent", "payer")
    assert result.exit_code == 0, result.output
    assert "Revoked 2 key(s): key_1, key_2." in result.stdout


async def test_kill_needs_exactly_one_target(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    result = await run_cli("kill")
    assert result.exit_code == 2
    result = await run_cli("kill", "--agent", "a", "--group", "g")
    assert result.exit_code == 2
