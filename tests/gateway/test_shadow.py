"""Shadow mode through the gateway: calls pass, the would-be refusals are in the audit and
in /metrics (counted as allowed, with the code they would have had)."""

from __future__ import annotations

from typing import Any

from .fakes import Outlay


async def test_a_shadow_rpm_of_one_passes_ten_calls_and_counts_nine(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"rpm": 1, "enforce": "shadow"})
    for _ in range(10):
        resp = await outlay.chat(key["key"])
        assert resp.status == 200
    assert len(outlay.upstream.requests) == 10
    codes = [e["code"] for e in await outlay.audit()]
    assert codes.count("shadow_refusal") == 9
    text = await (await outlay.client.get("/metrics")).text()
    [line] = [row for row in text.splitlines() if "shadow_rate_limit_exceeded" in row]
    assert 'decision="allowed"' in line
    assert line.endswith(" 9")


async def test_an_unknown_enforce_value_is_refused_and_nothing_stored(outlay: Outlay) -> None:
    for policy in ({"enforce": "dry-run"}, {"budgets": [{"usd": 1, "enforce": "off"}]}):
        answer = await outlay.admin("PUT", "policies/agent:agent-a", policy, expect=400)
        assert "enforce must be 'enforce' or 'shadow'" in answer["error"]["message"]
    assert (await outlay.admin("GET", "policies"))["policies"] == []
    stored = await outlay.set_policy("agent:agent-a", {
        "enforce": "shadow", "budgets": [{"usd": 1, "enforce": "shadow"}]})
    assert stored["enforce"] == "shadow"
    assert stored["budgets"][0]["enforce"] == "shadow"
