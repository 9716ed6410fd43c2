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


USED = {
    **APPROVAL, "id": "apr_02", "state": "used",
    "breaches": [{"scope": "agent:payer", "code": "budget_exceeded"},
                 {"scope": "key:key_1", "code": "rate_limit_exceeded"}],
    "estimated_usd": "0.2", "expires_at": "2025-06-15T13:00:00Z",
    "request": {"route": "vendor.stripe", "vendor": "stripe", "model": None,
                "request_id": "req_first", "method": "POST", "path": "/v1/payment_intents",
                "body_sha256": "ab" * 32},
    "decided_at": "2025-06-15T12:01:00Z", "note": "once", "used_by": "req_second",
    "used_at": "2025-06-15T12:02:00Z",
}


async def test_list_shows_what_was_approved_and_what_used_it(
        fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/approvals", {"approvals": [USED]})
    result = await run_cli("approvals", "list", "--state", "used")
    assert result.exit_code == 0, result.output
    for text in ("budget_exceeded on agent:payer, rate_limit_exceeded on key:key_1",
                 "POST /v1/payment_intents · stripe", "0.2", "req_second"):
        assert text in result.stdout


async def test_show_prints_one_approval_whole(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/approvals/apr_02", USED)
    result = await run_cli("approvals", "show", "apr_02")
    assert result.exit_code == 0, result.output
    for text in ("ab" * 32, "at most:", "expires:", "2025-06-15 13:00:00Z", "used by:",
                 "req_second", "2025-06-15 12:02:00Z", "once"):
        assert text in result.stdout


async def test_list_takes_expired_but_no_unknown_state(
        fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/approvals", {"approvals": []})
    assert (await run_cli("approvals", "list", "--state", "expired")).exit_code == 0
    assert fake_admin.last.query == {"state": "expired"}
    assert (await run_cli("approvals", "list", "--state", "gone")).exit_code == 2


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
