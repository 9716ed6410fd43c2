"""Approvals through the gateway: the approved call is the request the human saw, anything
else presenting its approval is refused with 403 approval_mismatch and never forwarded, and
an approval header that is not an approval id is refused like any malformed request."""

from __future__ import annotations

from typing import Any

import pytest

from .fakes import CHAT, Outlay, error_of
from .test_bad_input import assert_recorded_invalid, assert_still_serving

# test-gpt: 1 micro-USD an input token, 2 an output token
HELD = {"on_breach": "require_approval",
        "budgets": [{"usd": "0.00001", "period": "day", "mode": "hard"}]}


async def opened(outlay: Outlay, secret: str, body: dict[str, Any]) -> str:
    resp = await outlay.chat(secret, body)
    assert resp.status == 403
    error = error_of(await resp.json(), "openai")
    assert error["code"] == "approval_required"
    return str(error["approval_id"])


@pytest.mark.parametrize("header", ["yes", "apr_XYZ", "apr_0123456789abcdef0", "key_1"])
async def test_an_approval_header_that_is_no_approval_id_is_refused_naming_it(
        outlay: Outlay, key: dict[str, Any], header: str) -> None:
    await outlay.set_policy("agent:agent-a", HELD)
    resp = await outlay.chat(key["key"], headers={"X-Outlay-Approval": header})
    assert resp.status == 400
    error = error_of(await resp.json(), "openai")
    assert (error["code"], error["param"]) == ("invalid_request", "X-Outlay-Approval")
    assert "X-Outlay-Approval" in error["message"]
    await assert_recorded_invalid(outlay, resp.headers["X-Outlay-Request-Id"], 400,
                                  "invalid_request", key["id"])
    assert (await outlay.admin("GET", "approvals"))["approvals"] == []  # nothing opened
    assert (await outlay.budget("agent:agent-a"))["reserved_usd"] == "0"
    await outlay.set_policy("agent:agent-a", {})
    await assert_still_serving(outlay, key["key"])


async def test_the_approved_request_passes_once_and_no_other_does(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", HELD)
    approval_id = await opened(outlay, key["key"], CHAT)
    shown = await outlay.admin("GET", f"approvals/{approval_id}")
    assert (shown["request"]["method"], shown["request"]["path"]) == (
        "POST", "/chat/completions")
    await outlay.admin("POST", f"approvals/{approval_id}/approve", {})
    header = {"X-Outlay-Approval": approval_id}

    dearer = {**CHAT, "max_tokens": 90}
    resp = await outlay.chat(key["key"], dearer, headers=header)
    assert resp.status == 403
    error = error_of(await resp.json(), "openai")
    assert (error["code"], error["type"], error["differs"], error["approval_id"]) == (
        "approval_mismatch", "permission_error", ["body", "amount"], approval_id)
    assert outlay.upstream.requests == []  # nothing forwarded
    assert (await outlay.budget("agent:agent-a"))["reserved_usd"] == "0"

    resp = await outlay.chat(key["key"], CHAT, headers=header)
    assert resp.status == 200
    assert len(outlay.upstream.requests) == 1
    resp = await outlay.chat(key["key"], CHAT, headers=header)
    assert resp.status == 403
    error = error_of(await resp.json(), "openai")
    assert (error["code"], error["state"]) == ("approval_mismatch", "used")
    assert len(outlay.upstream.requests) == 1
    codes = [e["code"] for e in await outlay.audit()]
    assert codes == ["approval_mismatch", "approved_overage", "approval_mismatch",
                     "approval_required"]


async def test_an_approval_of_another_key_is_refused(outlay: Outlay,
                                                     key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", HELD)
    approval_id = await opened(outlay, key["key"], CHAT)
    await outlay.admin("POST", f"approvals/{approval_id}/approve", {})
    other = await outlay.mint("agent-b")
    resp = await outlay.chat(other["key"], CHAT, headers={"X-Outlay-Approval": approval_id})
    assert resp.status == 403
    error = error_of(await resp.json(), "openai")
    assert (error["code"], error["differs"]) == ("approval_mismatch", ["key"])
    assert outlay.upstream.requests == []
    assert (await outlay.admin("GET", f"approvals/{approval_id}"))["state"] == "approved"
