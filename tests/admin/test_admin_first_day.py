"""Admin writes that refuse what they do not understand and say what they did: PATCH and PUT
of policies, unknown fields on every route, allow-lists of unknown models, agents that
exist, keys that create their agent, scopes that name nothing, and `default_policy`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from .harness import ADMIN_TOKEN, Admin, gateway_app

SCOPE = "agent:order-processor"
BUDGET = {"usd": "5", "period": "day", "mode": "hard"}


async def made(admin: Admin, agent: str = "order-processor") -> None:
    await admin.call("POST", "agents", {"name": agent}, expect=201)


async def test_patch_changes_only_what_it_names(admin: Admin) -> None:
    await made(admin)
    await admin.call("PUT", f"policies/{SCOPE}", {"budgets": [BUDGET], "models": ["gpt-4o"]})
    patched = await admin.call("PATCH", f"policies/{SCOPE}", {"rpm": 120})
    assert patched["rpm"] == 120
    assert patched["budgets"] == [BUDGET]
    assert patched["models"] == ["gpt-4o"]
    assert patched["removed"] == {}
    assert "warning" not in patched
    # null removes one field, and says so
    cleared = await admin.call("PATCH", f"policies/{SCOPE}", {"models": None})
    assert "models" not in cleared
    assert cleared["removed"] == {"models": ["gpt-4o"]}
    assert cleared["budgets"] == [BUDGET]


async def test_put_says_what_it_removed_and_refuses_to_drop_a_budget(admin: Admin) -> None:
    await made(admin)
    await admin.call("PUT", f"policies/{SCOPE}", {"budgets": [BUDGET], "rpm": 10, "tpm": 9})
    refused = await admin.refused("PUT", f"policies/{SCOPE}", {"rpm": 120}, status=409,
                                  code="budget_would_be_dropped")
    assert refused["budgets"] == [BUDGET]
    assert "drop_budgets=true" in refused["message"]
    kept = await admin.call("GET", f"policies/{SCOPE}")
    assert (kept["rpm"], kept["budgets"]) == (10, [BUDGET])  # nothing stored
    same_budget = await admin.call("PUT", f"policies/{SCOPE}", {"budgets": [BUDGET]})
    assert same_budget["removed"] == {"rpm": 10, "tpm": 9}
    # a budget of the same period and mode with another cap is changed, not dropped
    lowered = await admin.call("PUT", f"policies/{SCOPE}", {"budgets": [{**BUDGET, "usd": 2}]})
    assert (lowered["removed"], lowered["budgets"][0]["usd"]) == ({}, "2")
    soft = await admin.refused("PUT", f"policies/{SCOPE}", {"budgets": [
        {**BUDGET, "mode": "soft"}]}, status=409, code="budget_would_be_dropped")
    assert soft["budgets"] == [{**BUDGET, "usd": "2"}]
    # so is a money-out budget in place of a spend one: another cap, not the same one
    out = await admin.refused("PUT", f"policies/{SCOPE}", {"budgets": [
        {**BUDGET, "flow": "out"}]}, status=409, code="budget_would_be_dropped")
    assert out["budgets"] == [{**BUDGET, "usd": "2"}]
    dropped = await admin.call("PUT", f"policies/{SCOPE}?drop_budgets=true", {"rpm": 1})
    assert dropped["removed"] == {"budgets": [{**BUDGET, "usd": "2"}]}
    assert "budgets" not in await admin.call("GET", f"policies/{SCOPE}")


async def test_patch_of_a_bad_or_unknown_field_stores_nothing(admin: Admin) -> None:
    await made(admin)
    await admin.call("PUT", f"policies/{SCOPE}", {"budgets": [BUDGET]})
    for body, hint in (({"rmp": 5}, "did you mean rpm?"), ({"rpm": -1}, "rpm")):
        error = await admin.refused("PATCH", f"policies/{SCOPE}", body,
                                    code="invalid_policy")
        assert hint in error["message"]
    removing = await admin.refused("PATCH", f"policies/{SCOPE}", {"budgets": None},
                                   status=409, code="budget_would_be_dropped")
    assert removing["scope"] == SCOPE
    assert (await admin.call("GET", f"policies/{SCOPE}"))["budgets"] == [BUDGET]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_an_unpriced_model_in_an_allow_list_is_refused_with_the_nearest(
        admin: Admin, method: str) -> None:
    await made(admin)
    error = await admin.refused(method, f"policies/{SCOPE}", {"models": ["gpt-4o-mnii"]})
    assert error["param"] == "models"
    assert error["nearest"][0] == "gpt-4o-mini"
    assert "allow_unpriced=true" in error["message"]
    await admin.call("GET", f"policies/{SCOPE}", expect=404)
    for fine in (["gpt-4o-mini"], ["gpt-4*"]):  # a priced name, a glob
        await admin.call(method, f"policies/{SCOPE}", {"models": fine})
    insisted = await admin.call(method, f"policies/{SCOPE}?allow_unpriced=true",
                                {"models": ["my-own-model"]})
    assert insisted["models"] == ["my-own-model"]
    keyed = await admin.refused("POST", "keys", {"agent": "order-processor",
                                                 "policy": {"models": ["claude-sonet-4-5"]}})
    assert "claude-sonnet-4-5" in keyed["nearest"]
    assert (await admin.call("GET", "keys"))["keys"] == []


async def test_a_policy_for_a_scope_that_names_nothing_is_stored_with_a_warning(
        admin: Admin) -> None:
    for scope in ("agent:does-not-exist", "group:nobody", "key:key_0000000000000000",
                  "vendor:acme"):
        stored = await admin.call("PUT", f"policies/{scope}", {"rpm": 5})
        assert "names no" in stored["warning"], scope
        assert (await admin.call("GET", f"policies/{scope}"))["rpm"] == 5
    for scope in ("global", "vendor:stripe", "vendor:openai", "vendor:anthropic"):
        assert "warning" not in await admin.call("PUT", f"policies/{scope}", {"rpm": 5})


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "keys", {"agent": "a", "ttl": "5s"}, "ttl"),
    ("POST", "keys", {"agent": "a", "expires_in": 5}, "expires_in"),
    ("PATCH", "keys/key_0", {"nmae": "x"}, "nmae"),
    ("POST", "agents", {"name": "a", "groupe": "g"}, "groupe"),
    ("PATCH", "agents/a", {"group": "g", "x": 1}, "x"),
    ("POST", "webhooks", {"url": "https://example.com/h", "event": ["*"]}, "event"),
    ("POST", "webhooks/wh_0/rotate", {"overlap": 5}, "overlap"),
    ("POST", "webhooks/wh_0/enable", {"now": True}, "now"),
    ("POST", "keys/key_0/revoke", {"reason": "x"}, "reason"),
    ("POST", "agents/a/revoke", {"all": True}, "all"),
    ("POST", "approvals/apr_0123456789abcdef/approve", {"notes": "ok"}, "notes"),
])
async def test_every_admin_write_refuses_an_unknown_field(
        admin: Admin, method: str, path: str, body: dict[str, Any], field: str) -> None:
    error = await admin.refused(method, path, body)
    assert error["param"] == field
    assert f"unknown field(s) {field}" in error["message"]
    assert "known: " in error["message"] or "this route takes none" in error["message"]
    assert (await admin.call("GET", "keys"))["keys"] == []
    assert (await admin.call("GET", "agents"))["agents"] == []


async def test_a_key_for_a_new_agent_creates_it_and_says_so(admin: Admin) -> None:
    first = await admin.mint("suport-bot")
    assert first["agent_created"] is True
    second = await admin.mint("suport-bot")
    assert second["agent_created"] is False


async def test_new_agents_get_the_default_policy(aiohttp_client: AiohttpClient,
                                                 tmp_path: Path) -> None:
    default = {"budgets": [{"usd": "0.01", "period": "day", "mode": "hard"}], "rpm": 30}
    app, store, clock = gateway_app(tmp_path / "o.db", default_policy=default)
    admin = Admin(app, await aiohttp_client(app), store, clock)
    await store.init_admin_token(ADMIN_TOKEN)
    minted = await admin.mint("suport-bot")
    assert (minted["agent_created"], minted["default_policy"]) == (True, True)
    policy = await admin.call("GET", "policies/agent:suport-bot")
    assert (policy["budgets"], policy["rpm"]) == (default["budgets"], 30)
    created = await admin.call("POST", "agents", {"name": "other"}, expect=201)
    assert created["default_policy"] is True
    assert (await admin.call("GET", "policies/agent:other"))["rpm"] == 30
    # an agent whose policy was set first keeps it
    await admin.call("PUT", "policies/agent:planned", {"rpm": 7})
    planned = await admin.mint("planned")
    assert (planned["agent_created"], planned["default_policy"]) == (True, False)
    assert (await admin.call("GET", "policies/agent:planned"))["rpm"] == 7
    # the key is held to it: two calls of a minute's thirty are counted on the agent
    again = await admin.mint("suport-bot")
    assert (again["agent_created"], again["default_policy"]) == (False, False)
