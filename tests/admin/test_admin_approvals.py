"""Approvals and the kill switch over an agent or a group, through the admin API."""

from __future__ import annotations

from .harness import Admin


async def test_revoking_an_agent_refuses_all_its_keys(admin: Admin) -> None:
    first, second = await admin.mint("fleet-a"), await admin.mint("fleet-a")
    other = await admin.mint("fleet-b")
    answer = await admin.call("POST", "agents/fleet-a/revoke", {})
    assert answer["agent"] == "fleet-a"
    assert sorted(answer["revoked"]) == sorted([first["id"], second["id"]])
    for minted in (first, second):
        resp = await admin.chat(minted["key"])
        assert (resp.status, (await resp.json())["error"]["code"]) == (401, "key_revoked")
    assert (await admin.chat(other["key"])).status == 200


async def test_revoking_a_group(admin: Admin) -> None:
    await admin.call("POST", "agents", {"name": "g1", "group": "night"}, expect=201)
    minted = await admin.mint("g1")
    answer = await admin.call("POST", "groups/night/revoke", {})
    assert answer == {"group": "night", "revoked": [minted["id"]]}
    assert (await admin.call("POST", "groups/night/revoke", {}))["revoked"] == []


async def test_an_approval_through_the_admin_api(admin: Admin) -> None:
    await admin.call("PUT", "policies/agent:held", {
        "on_breach": "require_approval", "rpm": 0})
    minted = await admin.mint("held")
    resp = await admin.chat(minted["key"])
    error = (await resp.json())["error"]
    assert (resp.status, error["code"], error["reason"]) == (
        403, "approval_required", "rate_limit_exceeded")
    approval_id = error["approval_id"]
    pending = await admin.call("GET", "approvals?state=pending")
    assert [a["id"] for a in pending["approvals"]] == [approval_id]
    shown = await admin.call("GET", f"approvals/{approval_id}")
    assert (shown["state"], shown["agent"], shown["code"]) == (
        "pending", "held", "rate_limit_exceeded")
    decided = await admin.call("POST", f"approvals/{approval_id}/deny", {"note": "no"})
    assert (decided["state"], decided["note"]) == ("denied", "no")
    await admin.refused("POST", f"approvals/{approval_id}/approve", {}, status=409,
                        code="conflict")
    await admin.refused("GET", "approvals/apr_nope", status=404, code="not_found")
    await admin.refused("GET", "approvals?state=maybe", code="invalid_request")
