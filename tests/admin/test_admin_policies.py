"""Policies on every kind of scope: set, show, list, delete; bad fields and bad scopes refused
with a message naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.model import parse_policy

from .harness import Admin

FULL = {
    "rpm": 60, "rph": 200, "rpd": 5000, "tpm": 100_000, "max_parallel": 10,
    "budgets": [{"usd": 50, "period": "month", "mode": "hard", "warn_at": 0.8},
                {"usd": 5, "period": "day", "mode": "soft"}],
    "models": ["gpt-4o-mini", "claude-*", "fast"], "free_models_only": False,
    "vendors": ["openai", "stripe"], "on_breach": "block",
}
STORED = {
    "rpm": 60, "rph": 200, "rpd": 5000, "tpm": 100_000, "max_parallel": 10,
    "budgets": [{"usd": "50", "period": "month", "mode": "hard", "warn_at": 0.8},
                {"usd": "5", "period": "day", "mode": "soft"}],
    "models": ["gpt-4o-mini", "claude-*", "fast"],
    "vendors": ["openai", "stripe"], "on_breach": "block",
}


async def test_put_answers_the_stored_policy(admin: Admin) -> None:
    stored = await admin.call("PUT", "policies/agent:order-processor", FULL)
    assert stored.pop("removed") == {}
    assert "names no agent yet" in stored.pop("warning")
    assert stored == {"scope": "agent:order-processor", "managed_by": None, **STORED}
    assert await admin.call("GET", "policies/agent:order-processor") == stored


async def test_usd_keeps_full_precision(admin: Admin) -> None:
    stored = await admin.call("PUT", "policies/global",
                              {"budgets": [{"usd": "0.000001"}, {"usd": 0.1, "period": "day"}]})
    assert [b["usd"] for b in stored["budgets"]] == ["0.000001", "0.1"]


async def test_defaults_are_filled_in(admin: Admin) -> None:
    stored = await admin.call("PUT", "policies/global", {"budgets": [{"usd": 1}]})
    assert stored == {"scope": "global", "managed_by": None, "on_breach": "block",
                      "budgets": [{"usd": "1", "period": "month", "mode": "hard"}],
                      "removed": {}}


@pytest.mark.parametrize("scope", ["agent:a", "group:billing-agents", "vendor:stripe", "global"])
async def test_every_scope_kind(admin: Admin, scope: str) -> None:
    assert (await admin.call("PUT", f"policies/{scope}", {"rpm": 1}))["scope"] == scope


async def test_key_scope(admin: Admin) -> None:
    minted = await admin.mint()
    stored = await admin.call("PUT", f"policies/key:{minted['id']}", {"rpm": 3})
    assert stored["scope"] == f"key:{minted['id']}"
    assert (await admin.call("GET", f"keys/{minted['id']}"))["policy"]["rpm"] == 3


async def test_replace_list_and_delete(admin: Admin) -> None:
    await admin.call("PUT", "policies/global", {"rpm": 1})
    await admin.call("PUT", "policies/global", {"rph": 2})
    await admin.call("PUT", "policies/vendor:openai", {"tpm": 3})
    listed = (await admin.call("GET", "policies"))["policies"]
    assert listed == [
        {"scope": "global", "managed_by": None, "rph": 2, "on_breach": "block"},
        {"scope": "vendor:openai", "managed_by": None, "tpm": 3, "on_breach": "block"},
    ]
    assert await admin.call("DELETE", "policies/global") == {"scope": "global", "deleted": True}
    await admin.refused("GET", "policies/global", status=404, code="not_found")
    assert [p["scope"] for p in (await admin.call("GET", "policies"))["policies"]] == [
        "vendor:openai"]


async def test_keys_own_policies_can_be_left_out(admin: Admin) -> None:
    minted = await admin.mint(policy={"rpm": 3})
    await admin.call("PUT", "policies/global", {"rpm": 1})
    every = [p["scope"] for p in (await admin.call("GET", "policies"))["policies"]]
    assert every == ["global", f"key:{minted['id']}"]
    without = [p["scope"] for p in (await admin.call("GET", "policies?keys=false"))["policies"]]
    assert without == ["global"]
    error = await admin.refused("GET", "policies?keys=maybe")
    assert error["param"] == "keys"


async def test_a_policy_is_in_force_at_once(admin: Admin) -> None:
    minted = await admin.mint()
    await admin.call("PUT", "policies/agent:agent-a", {"rpm": 1})
    assert (await admin.chat(minted["key"])).status == 200
    assert (await admin.chat(minted["key"])).status == 429
    await admin.call("DELETE", "policies/agent:agent-a")
    assert (await admin.chat(minted["key"])).status == 200


async def test_no_policy_is_404(admin: Admin) -> None:
    error = await admin.refused("GET", "policies/agent:nobody", status=404, code="not_found")
    assert "agent:nobody" in error["message"]


@pytest.mark.parametrize(("policy", "named"), [
    ({"rpmx": 1}, "rpmx"),
    ({"rpm": -1}, "rpm"),
    ({"rpm": "60"}, "rpm"),
    ({"rph": 1.5}, "rph"),
    ({"max_parallel": True}, "max_parallel"),
    ({"budgets": {"usd": 1}}, "budgets"),
    ({"budgets": [{"period": "day"}]}, "budgets[0].usd"),
    ({"budgets": [{"usd": -1}]}, "budgets[0].usd"),
    ({"budgets": [{"usd": "lots"}]}, "budgets[0].usd"),
    ({"budgets": [{"usd": 1}, {"usd": 1, "period": "year"}]}, "budgets[1].period"),
    ({"budgets": [{"usd": 1, "mode": "maybe"}]}, "budgets[0].mode"),
    ({"budgets": [{"usd": 1, "warn_at": 2}]}, "budgets[0].warn_at"),
    ({"budgets": [{"usd": 1, "cap": 2}]}, "cap"),
    ({"budgets": [{"usd": 1, "flow": "in"}]}, "budgets[0].flow"),
    ({"budgets": [{"usd": 1}, {"usd": 1, "flow": "money"}]}, "budgets[1].flow"),
    ({"models": "gpt-4o"}, "models"),
    ({"models": [""]}, "models"),
    ({"vendors": [1]}, "vendors"),
    ({"free_models_only": "yes"}, "free_models_only"),
    ({"on_breach": "panic"}, "on_breach"),
    ({"approval_wait_s": -1}, "approval_wait_s"),
    ({"hold_wait_ms": -1}, "hold_wait_ms"),
    ({"hold_wait_ms": 1.5}, "hold_wait_ms"),
    ({"hold_wait_ms": "2000"}, "hold_wait_ms"),
    ({"hold_wait_ms": 600_001}, "hold_wait_ms"),
])
async def test_bad_policy_field_is_named(admin: Admin, policy: dict[str, Any],
                                         named: str) -> None:
    error = await admin.refused("PUT", "policies/global", policy, code="invalid_policy")
    assert named in error["message"]
    await admin.refused("GET", "policies/global", status=404, code="not_found")


async def test_policy_must_be_an_object(admin: Admin) -> None:
    await admin.refused("PUT", "policies/global", [1, 2])


@pytest.mark.parametrize("scope", ["team:x", "agent:", "global:x", "nope", "key:", "Agent:x"])
async def test_bad_scope(admin: Admin, scope: str) -> None:
    for method, path, body in [("PUT", f"policies/{scope}", {"rpm": 1}),
                               ("PATCH", f"policies/{scope}", {"rpm": 1}),
                               ("GET", f"policies/{scope}", None),
                               ("DELETE", f"policies/{scope}", None),
                               ("GET", f"usage/{scope}", None),
                               ("GET", f"audit?scope={scope}", None)]:
        resp = await admin.call(method, path, body, expect=400)
        assert resp["error"]["code"] == "invalid_policy"
        assert scope in resp["error"]["message"]
    assert (await admin.call("GET", "policies"))["policies"] == []


async def test_a_policy_the_configuration_file_manages_is_read_only(admin: Admin) -> None:
    file = "/etc/outlay/outlay.yaml"
    minted = await admin.mint()
    key_scope = f"key:{minted['id']}"
    assert await admin.store.apply_config_policies(file, {
        "agent:r": parse_policy({"budgets": [{"usd": 100, "period": "day"}]}),
        key_scope: parse_policy({"rpm": 5})}) == []
    await admin.call("PUT", "policies/agent:api", {"rpm": 7})
    for method, path, body in [("PUT", "policies/agent:r", {"budgets": [{"usd": 10}]}),
                               ("PUT", "policies/agent:r?drop_budgets=true", {"rpm": 1}),
                               ("PATCH", "policies/agent:r", {"rpm": 1}),
                               ("DELETE", "policies/agent:r", None),
                               ("PATCH", f"keys/{minted['id']}", {"policy": {"rpm": 50}})]:
        error = (await admin.call(method, path, body, expect=409))["error"]
        assert error["code"] == "policy_managed_by_config"
        assert file in error["message"]
        assert error["file"] == file
    shown = await admin.call("GET", "policies/agent:r")
    assert (shown["managed_by"], shown["budgets"][0]["usd"]) == (file, "100")
    listed = {p["scope"]: p["managed_by"] for p in (await admin.call("GET", "policies"))[
        "policies"]}
    assert listed == {"agent:api": None, "agent:r": file, key_scope: file}
    # a key's other fields stay the API's
    renamed = await admin.call("PATCH", f"keys/{minted['id']}", {"name": "ci"})
    assert (renamed["name"], renamed["policy"]["rpm"]) == ("ci", 5)
