"""Keys and agents through the admin API: minting (the secret shown once), listing, showing,
updating, revoking; agents and groups; and every validation error."""

from __future__ import annotations

from typing import Any

import pytest

from .harness import ADMIN_TOKEN, Admin

KEY_FIELDS = {"id", "agent", "group", "name", "labels", "created_at", "expires_at",
              "revoked_at", "policy"}


MINT_ONLY = {"key", "agent_created", "default_policy"}  # said only when the key is minted


async def test_mint_answers_201_with_the_secret(admin: Admin) -> None:
    minted = await admin.call("POST", "keys", {
        "agent": "order-processor", "name": "run-42", "ttl_seconds": 3600,
        "labels": {"run": "r-42", "workflow": "nightly"},
        "policy": {"rpm": 60, "budgets": [{"usd": 5, "period": "total"}]},
    }, expect=201)
    assert set(minted) == KEY_FIELDS | {"key", "agent_created", "default_policy"}
    assert minted["agent_created"] is True  # order-processor did not exist: the key made it
    assert minted["default_policy"] is False  # no default_policy configured
    assert minted["id"].startswith("key_")
    assert minted["key"].startswith("olk_")
    assert len(minted["key"]) > 20
    assert minted["agent"] == "order-processor"
    assert minted["name"] == "run-42"
    assert minted["labels"] == {"run": "r-42", "workflow": "nightly"}
    assert minted["created_at"] == "2025-06-15T12:00:00Z"
    assert minted["expires_at"] == "2025-06-15T13:00:00Z"
    assert minted["revoked_at"] is None
    assert minted["policy"]["rpm"] == 60
    assert minted["policy"]["budgets"] == [{"usd": "5", "period": "total", "mode": "hard"}]


async def test_only_agent_is_required(admin: Admin) -> None:
    minted = await admin.call("POST", "keys", {"agent": "a"}, expect=201)
    assert minted["expires_at"] is None
    assert minted["name"] is None
    assert minted["labels"] == {}
    assert minted["policy"] is None
    assert (await admin.chat(minted["key"])).status == 200


async def test_fractional_ttl(admin: Admin) -> None:
    minted = await admin.mint(ttl_seconds=1.5)
    assert minted["expires_at"] == "2025-06-15T12:00:01.500000Z"


async def test_the_secret_is_shown_only_once(admin: Admin) -> None:
    minted = await admin.mint(labels={"run": "r-1"})
    await admin.chat(minted["key"])
    later = [
        await admin.client.get(f"/admin/v1/{path}",
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        for path in ("keys", f"keys/{minted['id']}", "audit", "usage/global", "agents",
                     "reports?group_by=key")
    ]
    for resp in later:
        assert resp.status == 200
        assert minted["key"] not in await resp.text()
    shown = await admin.call("GET", f"keys/{minted['id']}")
    assert "key" not in shown


async def test_list_and_filter_keys(admin: Admin) -> None:
    first = await admin.mint("agent-a")
    admin.clock.advance(1)
    second = await admin.mint("agent-b")
    admin.clock.advance(1)
    third = await admin.mint("agent-a")
    listed = (await admin.call("GET", "keys"))["keys"]
    assert [k["id"] for k in listed] == [first["id"], second["id"], third["id"]]
    assert all(set(k) == KEY_FIELDS for k in listed)
    only_a = (await admin.call("GET", "keys?agent=agent-a"))["keys"]
    assert [k["id"] for k in only_a] == [first["id"], third["id"]]
    assert (await admin.call("GET", "keys?agent=nobody"))["keys"] == []


async def test_a_page_of_the_newest_keys_and_only_usable_ones(admin: Admin) -> None:
    made = []
    for n in range(5):
        made.append(await admin.mint("agent-a", ttl_seconds=60 if n == 1 else None))
        admin.clock.advance(1)
    await admin.call("POST", f"keys/{made[3]['id']}/revoke")
    page = await admin.call("GET", "keys?limit=2")
    assert [k["id"] for k in page["keys"]] == [made[4]["id"], made[3]["id"]]
    assert page["more"] is True
    assert (await admin.call("GET", "keys?limit=5"))["more"] is False
    admin.clock.advance(60)  # the key with a minute to live has expired
    usable = await admin.call("GET", "keys?limit=10&active=true")
    assert [k["id"] for k in usable["keys"]] == [made[4]["id"], made[2]["id"], made[0]["id"]]
    assert usable["more"] is False
    every = (await admin.call("GET", "keys?active=true"))["keys"]  # oldest first, no `more`
    assert [k["id"] for k in every] == [made[0]["id"], made[2]["id"], made[4]["id"]]
    assert "more" not in await admin.call("GET", "keys")


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "active=yes"])
async def test_bad_listing_parameters_are_refused(admin: Admin, query: str) -> None:
    error = await admin.refused("GET", f"keys?{query}")
    assert error["param"] == query.partition("=")[0]


async def test_show_key(admin: Admin) -> None:
    minted = await admin.mint(name="n", labels={"a": "b"})
    shown = await admin.call("GET", f"keys/{minted['id']}")
    assert shown == {k: v for k, v in minted.items() if k not in MINT_ONLY}


async def test_update_key(admin: Admin) -> None:
    minted = await admin.mint(name="old", labels={"run": "1"})
    updated = await admin.call("PATCH", f"keys/{minted['id']}", {
        "name": "new", "labels": {"run": "2"}, "policy": {"rpm": 1}})
    assert updated["name"] == "new"
    assert updated["labels"] == {"run": "2"}
    assert updated["policy"]["rpm"] == 1
    assert await admin.call("GET", f"keys/{minted['id']}") == updated
    assert (await admin.call("GET", f"policies/key:{minted['id']}"))["rpm"] == 1
    # the new policy is in force at once
    assert (await admin.chat(minted["key"])).status == 200
    assert (await admin.chat(minted["key"])).status == 429


async def test_update_leaves_what_is_not_given(admin: Admin) -> None:
    minted = await admin.mint(name="keep", labels={"run": "1"})
    updated = await admin.call("PATCH", f"keys/{minted['id']}", {})
    assert updated == {k: v for k, v in minted.items() if k not in MINT_ONLY}


async def test_revoke_key(admin: Admin) -> None:
    minted = await admin.mint()
    assert (await admin.chat(minted["key"])).status == 200
    admin.clock.advance(5)
    revoked = await admin.call("POST", f"keys/{minted['id']}/revoke")
    assert revoked["id"] == minted["id"]
    assert revoked["revoked_at"] == "2025-06-15T12:00:05Z"
    resp = await admin.chat(minted["key"])
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "key_revoked"
    admin.clock.advance(5)
    again = await admin.call("POST", f"keys/{minted['id']}/revoke")
    assert again["revoked_at"] == "2025-06-15T12:00:05Z"  # the first revocation stands


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "keys/key_missing"),
    ("PATCH", "keys/key_missing"),
    ("POST", "keys/key_missing/revoke"),
])
async def test_unknown_key_is_404(admin: Admin, method: str, path: str) -> None:
    error = await admin.refused(method, path, {} if method == "PATCH" else None, status=404,
                                code="not_found")
    assert "key_missing" in error["message"]


@pytest.mark.parametrize("ttl", [0, -1, "3600", True, [60], {"s": 1}, 10 * 366 * 86400 + 1,
                                 1e300])
async def test_invalid_ttl(admin: Admin, ttl: object) -> None:
    error = await admin.refused("POST", "keys", {"agent": "a", "ttl_seconds": ttl})
    assert error["param"] == "ttl_seconds"
    assert "ttl_seconds" in error["message"]
    assert (await admin.call("GET", "keys"))["keys"] == []


@pytest.mark.parametrize(("body", "param"), [
    ({}, "agent"),
    ({"agent": ""}, "agent"),
    ({"agent": 7}, "agent"),
    ({"agent": "a", "name": 5}, "name"),
    ({"agent": "a", "labels": ["run"]}, "labels"),
    ({"agent": "a", "labels": {"run": 1}}, "labels"),
])
async def test_invalid_key_fields(admin: Admin, body: dict[str, Any], param: str) -> None:
    error = await admin.refused("POST", "keys", body)
    assert error["param"] == param
    assert param in error["message"]


async def test_invalid_key_policy_names_the_field(admin: Admin) -> None:
    error = await admin.refused("POST", "keys", {"agent": "a", "policy": {"rpmx": 1}},
                                code="invalid_policy")
    assert "rpmx" in error["message"]
    assert (await admin.call("GET", "keys"))["keys"] == []
    error = await admin.refused("PATCH", f"keys/{(await admin.mint())['id']}",
                                {"policy": {"rpm": -1}}, code="invalid_policy")
    assert "rpm" in error["message"]


@pytest.mark.parametrize("raw", [b"{", b"[1]", b'"key"', b"\xff"])
async def test_body_must_be_a_json_object(admin: Admin, raw: bytes) -> None:
    resp = await admin.client.post("/admin/v1/keys", data=raw, headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_request"


async def test_agents_and_groups(admin: Admin) -> None:
    made = await admin.call("POST", "agents", {"name": "billing-1", "group": "billing"},
                            expect=201)
    assert made == {"name": "billing-1", "group": "billing", "default_policy": False}
    assert await admin.call("POST", "agents", {"name": "solo"}, expect=201) == {
        "name": "solo", "group": None, "default_policy": False}
    await admin.mint("made-on-first-key")
    agents = (await admin.call("GET", "agents"))["agents"]
    assert agents == [{"name": "billing-1", "group": "billing"},
                      {"name": "made-on-first-key", "group": None},
                      {"name": "solo", "group": None}]
    assert (await admin.call("GET", "groups"))["groups"] == [{"name": "billing", "agents": 1}]
    # an agent's keys carry its group, and calls are charged to it
    minted = await admin.mint("billing-1")
    assert minted["group"] == "billing"
    await admin.chat(minted["key"])
    assert (await admin.call("GET", "audit?scope=group:billing"))["entries"][0]["agent"] == (
        "billing-1")


async def test_moving_an_agent_to_another_group(admin: Admin) -> None:
    await admin.call("POST", "agents", {"name": "x", "group": "one"}, expect=201)
    # creating it again is refused: it would move the agent out of its group's budgets
    again = await admin.refused("POST", "agents", {"name": "x", "group": "two"}, status=409,
                                code="agent_exists")
    assert again["code"] == "agent_exists"
    assert again["agent"] == {"name": "x", "group": "one"}
    assert (await admin.call("GET", "agents"))["agents"] == [{"name": "x", "group": "one"}]
    moved = await admin.call("PATCH", "agents/x", {"group": "two"})
    assert moved == {"name": "x", "group": "two"}
    missing = await admin.refused("PATCH", "agents/nobody", {"group": "two"}, status=404,
                                  code="not_found")
    assert missing["code"] == "not_found"
    typo = await admin.refused("PATCH", "agents/x", {"grup": "two"})
    assert typo["param"] == "grup"
    assert "did you mean group?" in typo["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({}, "name"), ({"name": ""}, "name"), ({"name": 1}, "name"),
    ({"name": "a", "group": ""}, "group"), ({"name": "a", "group": 5}, "group"),
])
async def test_invalid_agent(admin: Admin, body: dict[str, Any], param: str) -> None:
    error = await admin.refused("POST", "agents", body)
    assert error["param"] == param
