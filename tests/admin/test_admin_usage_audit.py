"""The shapes scripts rely on (SPEC §4 "Admin essentials"): live usage of a scope, the audit
ledger newest first, spend reports, and the price table."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from .harness import Admin

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
USD = re.compile(r"^\d+(\.\d{1,6})?$")
AUDIT_FIELDS = {"request_id", "time", "key_id", "agent", "labels", "vendor", "model",
                "decision", "status", "reserved_usd", "cost_usd", "spent_usd", "cap_usd"}


def usd(value: str) -> Decimal:
    assert USD.match(value), value
    return Decimal(value)


async def test_usage_shape(admin: Admin) -> None:
    minted = await admin.mint()
    await admin.call("PUT", "policies/agent:agent-a", {
        "rpm": 10, "tpm": 10_000, "budgets": [{"usd": 5, "period": "day"},
                                              {"usd": 50, "period": "month", "mode": "soft"}]})
    assert (await admin.chat(minted["key"])).status == 200
    usage = await admin.call("GET", "usage/agent:agent-a")
    assert {"scope", "windows", "budgets", "spend_by_model", "spend_by_vendor"} <= set(usage)
    assert usage["scope"] == "agent:agent-a"

    windows = {w["name"]: w for w in usage["windows"]}
    assert set(windows) == {"rpm", "tpm"}
    for window in windows.values():
        assert {"name", "limit", "used", "remaining", "reset_at"} <= set(window)
        assert window["used"] + window["remaining"] == window["limit"]
        assert ISO.match(window["reset_at"])
    assert (windows["rpm"]["limit"], windows["rpm"]["used"]) == (10, 1)
    assert 0 < windows["tpm"]["used"] < 10_000

    day, month = usage["budgets"]
    for budget in (day, month):
        assert {"period", "mode", "cap_usd", "spent_usd", "reserved_usd", "remaining_usd",
                "resets_at"} <= set(budget)
        spent = usd(budget["spent_usd"])
        assert spent > 0
        assert usd(budget["reserved_usd"]) == 0
        assert usd(budget["remaining_usd"]) == usd(budget["cap_usd"]) - spent
    assert (day["period"], day["mode"], day["cap_usd"]) == ("day", "hard", "5")
    assert day["resets_at"] == "2025-06-16T00:00:00Z"
    assert (month["period"], month["mode"], month["resets_at"]) == (
        "month", "soft", "2025-07-01T00:00:00Z")
    assert usage["spend_by_model"] == {"gpt-4o-mini": day["spent_usd"]}
    assert usage["spend_by_vendor"] == {"openai": day["spent_usd"]}


async def test_total_budget_never_resets(admin: Admin) -> None:
    await admin.call("PUT", "policies/global", {"budgets": [{"usd": 1, "period": "total"}]})
    [budget] = (await admin.call("GET", "usage/global"))["budgets"]
    assert budget["resets_at"] is None


async def test_usage_of_a_scope_without_policy(admin: Admin) -> None:
    usage = await admin.call("GET", "usage/group:nobody")
    assert usage["scope"] == "group:nobody"
    assert usage["windows"] == []
    assert usage["budgets"] == []
    assert usage["spend_by_model"] == {}


async def test_spend_shows_on_every_scope_of_the_call(admin: Admin) -> None:
    await admin.call("POST", "agents", {"name": "agent-a", "group": "fleet"}, expect=201)
    minted = await admin.mint()
    await admin.chat(minted["key"])
    scopes = [f"key:{minted['id']}", "agent:agent-a", "group:fleet", "vendor:openai", "global"]
    spends = [(await admin.call("GET", f"usage/{s}"))["spend_by_vendor"] for s in scopes]
    assert spends[0]["openai"]
    assert all(spend == spends[0] for spend in spends)
    assert (await admin.call("GET", "usage/agent:other"))["spend_by_vendor"] == {}


async def calls(admin: Admin) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Three calls: allowed (a), refused for rate (a), allowed (b), one second apart."""
    a = await admin.mint("agent-a", labels={"run": "r-1"})
    b = await admin.mint("agent-b")
    await admin.call("PUT", "policies/agent:agent-a",
                     {"rpm": 1, "budgets": [{"usd": 2, "period": "day"}]})
    ids = []
    for secret in (a["key"], a["key"], b["key"]):
        resp = await admin.chat(secret)
        ids.append(resp.headers["X-Outlay-Request-Id"])
        admin.clock.advance(1)
    return a, b, ids


async def test_audit_newest_first_with_every_field(admin: Admin) -> None:
    a, b, ids = await calls(admin)
    entries = (await admin.call("GET", "audit"))["entries"]
    assert [e["request_id"] for e in entries] == ids[::-1]
    for entry in entries:
        assert set(entry) >= AUDIT_FIELDS
        assert ISO.match(entry["time"])
    newest, refused, first = entries
    assert first == first | {
        "time": "2025-06-15T12:00:00Z", "key_id": a["id"], "agent": "agent-a",
        "labels": {"run": "r-1"}, "vendor": "openai", "model": "gpt-4o-mini",
        "decision": "allowed", "status": 200, "cap_usd": "2"}
    assert usd(first["reserved_usd"]) >= usd(first["cost_usd"]) > 0
    assert first["spent_usd"] == first["cost_usd"]  # cumulative spend against the cap
    assert refused == refused | {
        "time": "2025-06-15T12:00:01Z", "decision": "refused", "status": 429,
        "reserved_usd": "0", "cost_usd": "0", "key_id": a["id"]}
    assert newest == newest | {"agent": "agent-b", "key_id": b["id"], "labels": {},
                               "decision": "allowed", "spent_usd": None, "cap_usd": None}


async def test_audit_scope_and_limit(admin: Admin) -> None:
    a, _, ids = await calls(admin)
    only_b = (await admin.call("GET", "audit?scope=agent:agent-b"))["entries"]
    assert [e["request_id"] for e in only_b] == [ids[2]]
    by_key = (await admin.call("GET", f"audit?scope=key:{a['id']}"))["entries"]
    assert [e["request_id"] for e in by_key] == ids[1::-1]
    assert len((await admin.call("GET", "audit?scope=vendor:openai"))["entries"]) == 3
    assert (await admin.call("GET", "audit?scope=vendor:stripe"))["entries"] == []
    limited = (await admin.call("GET", "audit?limit=1"))["entries"]
    assert [e["request_id"] for e in limited] == [ids[2]]
    assert len((await admin.call("GET", "audit?limit=1000"))["entries"]) == 3


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1", "1.5", ""])
async def test_audit_bad_limit(admin: Admin, limit: str) -> None:
    error = await admin.refused("GET", f"audit?limit={limit}")
    assert error["param"] == "limit"


async def test_reports(admin: Admin) -> None:
    a, b, _ = await calls(admin)
    default = await admin.call("GET", "reports")
    assert default["group_by"] == "agent"
    rows = {r["agent"]: r for r in default["rows"]}
    assert rows["agent-a"] == rows["agent-a"] | {"requests": 2, "allowed": 1, "refused": 1,
                                                 "unsettled": 0}
    assert rows["agent-b"] == rows["agent-b"] | {"requests": 1, "allowed": 1, "refused": 0}
    assert usd(rows["agent-a"]["cost_usd"]) > 0
    by_model = (await admin.call("GET", "reports?group_by=model"))["rows"]
    assert [r["model"] for r in by_model] == ["gpt-4o-mini"]
    assert by_model[0]["requests"] == 3
    by_key = (await admin.call("GET", "reports?group_by=key"))["rows"]
    assert {r["key"] for r in by_key} == {a["id"], b["id"]}
    future = 10**13
    assert (await admin.call("GET", f"reports?since_ms={future}"))["rows"] == []


@pytest.mark.parametrize(("query", "param"), [
    ("group_by=colour", "group_by"), ("since_ms=yesterday", "since_ms"),
    ("since_ms=-5", "since_ms")])
async def test_reports_bad_query(admin: Admin, query: str, param: str) -> None:
    error = await admin.refused("GET", f"reports?{query}")
    assert error["param"] == param


async def test_prices(admin: Admin) -> None:
    models = {m["name"]: m for m in (await admin.call("GET", "prices"))["models"]}
    mini = models["gpt-4o-mini"]
    assert mini["provider"] == "openai"
    assert usd(mini["input"]) > 0
    assert usd(mini["output"]) > usd(mini["input"])
    assert {"name", "provider", "input", "cached_input", "output", "max_output_tokens",
            "context_window", "free", "aliases"} <= set(mini)


async def test_one_price_with_every_dimension(admin: Admin) -> None:
    # a dated snapshot resolves to its model, as a request naming it would
    sonnet = await admin.call("GET", "prices/claude-sonnet-4-5-20250929")
    assert (sonnet["requested"], sonnet["name"], sonnet["base_tier"]) == (
        "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "standard")
    assert sonnet["tiers"] == [{"threshold": 200_000, "input": "6", "cached_input": "0.6",
                                "cache_write": "7.5", "cache_write_1h": "12",
                                "output": "22.5"}]
    assert sonnet["service_tiers"]["batch"]["input"] == "1.5"
    assert sonnet["betas"] == {"context-1m": {"context_window": 1_000_000}}
    assert sonnet["tool_fees"] == {"web_fetch": "0", "web_search": "0.01"}
    assert sonnet["service_tier_default"] == "standard"
    assert sonnet["source"]["prices"].startswith("genai-prices ")
    assert sonnet["source"]["max_output_tokens"] == "prices.yaml"
    gpt5 = await admin.call("GET", "prices/gpt-5")
    assert set(gpt5["service_tiers"]) == {"flex", "priority"}


async def test_an_unknown_model_has_no_price(admin: Admin) -> None:
    error = await admin.refused("GET", "prices/no-such-model", status=404, code="not_found")
    assert "no-such-model" in error["message"]
