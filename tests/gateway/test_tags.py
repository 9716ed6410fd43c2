"""X-Outlay-Tags through the gateway: checked at the edge, joined to the key's labels, kept
in the ledger, charged to tag scopes; the budget headers name the tightest budget's scope."""

from __future__ import annotations

from typing import Any

import pytest

from .fakes import Outlay


async def test_tags_are_recorded_under_the_key_s_labels(outlay: Outlay,
                                                        key: dict[str, Any]) -> None:
    await outlay.admin("PATCH", f"keys/{key['id']}", {"labels": {"team": "billing"}})
    resp = await outlay.chat(key["key"], headers={
        "X-Outlay-Tags": "workflow=nightly-billing, customer=acme,team=other"})
    assert resp.status == 200
    [entry] = await outlay.audit()
    assert entry["labels"] == {"workflow": "nightly-billing", "customer": "acme",
                               "team": "billing"}
    assert [e["request_id"] for e in await outlay.audit(scope="label:customer=acme")] == [
        entry["request_id"]]
    assert await outlay.audit(scope="label:team=other") == []
    assert len(await outlay.audit(scope="label:team=billing")) == 1


@pytest.mark.parametrize("header", [
    "customer", "customer=", "=acme", "customer=acme corp", "a=1,a=2", "cust omer=x",
    ",".join(f"t{i}=v" for i in range(9)), "customer=acme;x", "x=" + "v" * 129,
])
async def test_a_malformed_tags_header_is_refused_naming_it(
        outlay: Outlay, key: dict[str, Any], header: str) -> None:
    resp = await outlay.chat(key["key"], headers={"X-Outlay-Tags": header})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == "X-Outlay-Tags"
    assert "X-Outlay-Tags" in error["message"]
    [entry] = await outlay.audit()
    assert (entry["decision"], entry["cost_usd"]) == ("invalid", "0")
    assert outlay.upstream.requests == []


async def test_eight_tags_pass_and_an_empty_header_is_no_tag(
        outlay: Outlay, key: dict[str, Any]) -> None:
    resp = await outlay.chat(key["key"], headers={
        "X-Outlay-Tags": ",".join(f"t{i}=v{i}" for i in range(8))})
    assert resp.status == 200
    resp = await outlay.chat(key["key"], headers={"X-Outlay-Tags": " "})
    assert resp.status == 200
    latest, first = await outlay.audit()
    assert latest["labels"] == {}
    assert len(first["labels"]) == 8


async def test_the_budget_headers_name_the_tightest_budget(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"budgets": [{"usd": 1, "period": "day"}]})
    await outlay.set_policy("tag:customer=*", {"budgets": [{"usd": "0.5", "period": "day"}]})
    resp = await outlay.chat(key["key"], headers={"X-Outlay-Tags": "customer=acme"})
    assert resp.status == 200
    assert resp.headers["X-Outlay-Budget-Scope"] == "tag:customer=acme"
    assert resp.headers["X-Outlay-Budget-Remaining-Usd"] == resp.headers[
        "X-Budget-Remaining-USD"]
    remaining = float(resp.headers["X-Outlay-Budget-Remaining-Usd"])
    assert 0.49 < remaining < 0.5
    resp = await outlay.chat(key["key"])
    assert resp.headers["X-Outlay-Budget-Scope"] == "agent:agent-a"
    await outlay.set_policy("agent:agent-a", {"rpm": 100})
    resp = await outlay.chat(key["key"])
    assert "X-Outlay-Budget-Scope" not in resp.headers
    assert "X-Outlay-Budget-Remaining-Usd" not in resp.headers


async def test_a_required_tag_is_a_400_and_costs_nothing(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.admin("PATCH", f"keys/{key['id']}", {"policy": {"required_tags": ["customer"]}})
    resp = await outlay.chat(key["key"])
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["tag"]) == ("missing_tag", "customer")
    assert outlay.upstream.requests == []
    resp = await outlay.chat(key["key"], headers={"X-Outlay-Tags": "customer=acme"})
    assert resp.status == 200


@pytest.mark.parametrize(("scope", "policy", "words"), [
    ("agent:*", {"rpm": 1}, "only a tag scope"),
    ("tag:customer", {"rpm": 1}, "tag:<name>=<value>"),
    ("tag:cust omer=*", {"rpm": 1}, "tag:<name>=<value>"),
    ("agent:bot", {"max_values": 5}, "max_values applies only"),
    ("tag:customer=*", {"max_values": 0}, "max_values must be"),
    ("tag:customer=*", {"required_tags": ["bad name"]}, "required_tags"),
])
async def test_bad_tag_policies_are_refused_and_nothing_is_stored(
        outlay: Outlay, scope: str, policy: dict[str, Any], words: str) -> None:
    answer = await outlay.admin("PUT", f"policies/{scope}", policy, expect=400)
    assert words in answer["error"]["message"]
    listed = await outlay.admin("GET", "policies")
    assert listed["policies"] == []


async def test_the_usage_of_a_star_scope_lists_its_values(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("tag:customer=*", {"budgets": [{"usd": 1, "period": "day"}]})
    for value in ("acme", "beta", "acme"):
        resp = await outlay.chat(key["key"], headers={"X-Outlay-Tags": f"customer={value}"})
        assert resp.status == 200
    usage = await outlay.usage("tag:customer=*")
    assert usage["values_seen"] == 2
    assert [v["value"] for v in usage["values"]] == ["acme", "beta"]
    assert float(usage["values"][0]["budgets"][0]["spent_usd"]) > float(
        usage["values"][1]["budgets"][0]["spent_usd"]) > 0
    one = await outlay.admin("GET", "usage/tag:customer=*?values=1")
    assert len(one["values"]) == 1
