"""Where the money went, through the admin API: reports by label, spend over time, and both
as CSV; every bad parameter a 400 naming it."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest

from .harness import ADMIN_TOKEN, START_MS, Admin

HOUR = 3_600_000


async def tagged_calls(admin: Admin) -> dict[str, Any]:
    """Two calls of a nightly workflow (one of a key labelled run=r-1), one of no workflow,
    an hour apart each."""
    run = await admin.mint("agent-a", labels={"run": "r-1"})
    other = await admin.mint("agent-b")
    for secret, tags in ((run["key"], "workflow=nightly-billing"), (other["key"], ""),
                         (run["key"], "workflow=nightly-billing, run=r-9")):
        resp = await admin.client.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "max_tokens": 16,
                                          "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {secret}",
                     **({"X-Outlay-Tags": tags} if tags else {})})
        assert resp.status == 200, await resp.text()
        admin.clock.advance(3600)
    return run


async def get_text(admin: Admin, path: str) -> tuple[int, str, str]:
    resp = await admin.client.get(f"/admin/v1/{path}",
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_a_report_by_label_keys_each_row_by_the_label(admin: Admin) -> None:
    await tagged_calls(admin)
    answer = await admin.call("GET", "reports?group_by=label:workflow")
    assert answer["group_by"] == "label:workflow"
    rows = answer["rows"]
    assert [(r["label:workflow"], r["requests"], r["allowed"], r["refused"], r["unsettled"])
            for r in rows] == [("nightly-billing", 2, 2, 0, 0), (None, 1, 1, 0, 0)]
    assert set(rows[0]) == {"label:workflow", "requests", "allowed", "refused", "cost_usd",
                            "unsettled", "estimated", "out_usd"}
    # the key's run label stands: the tag run=r-9 does not move the call
    runs = (await admin.call("GET", "reports?group_by=label:run"))["rows"]
    assert {r["label:run"]: r["requests"] for r in runs} == {"r-1": 2, None: 1}
    entries = (await admin.call("GET", "audit?scope=label:workflow=nightly-billing"))["entries"]
    assert len(entries) == 2
    assert all(e["labels"]["run"] == "r-1" for e in entries)


async def test_a_series_answers_every_hour_of_its_range(admin: Admin) -> None:
    await tagged_calls(admin)
    since, until = START_MS - HOUR, START_MS + 5 * HOUR
    answer = await admin.call(
        "GET", f"reports/series?scope=agent:agent-a&interval=hour&since={since}&until={until}")
    assert (answer["scope"], answer["interval"]) == ("agent:agent-a", "hour")
    points = answer["points"]
    assert [p["start"] for p in points] == [
        f"2025-06-15T{h}:00:00Z" for h in range(11, 17)]
    assert [p["requests"] for p in points] == [0, 1, 0, 1, 0, 0]
    assert set(points[0]) == {"start", "requests", "refused", "cost_usd"}
    assert points[0]["cost_usd"] == "0"
    report = (await admin.call("GET", "reports?group_by=agent"))["rows"]
    (line,) = [r for r in report if r["agent"] == "agent-a"]
    assert sum(Decimal(p["cost_usd"]) for p in points) == Decimal(line["cost_usd"])


async def test_a_split_series_and_iso_times(admin: Admin) -> None:
    await tagged_calls(admin)
    answer = await admin.call("GET", "reports/series?interval=day&split=agent"
                                     "&since=2025-06-14&until=2025-06-16T00:00:00Z")
    assert [p["start"] for p in answer["points"]] == ["2025-06-14T00:00:00Z",
                                                       "2025-06-15T00:00:00Z"]
    assert answer["split"] == "agent"
    assert {s["agent"]: [p["requests"] for p in s["points"]] for s in answer["series"]} == {
        "agent-a": [0, 2], "agent-b": [0, 1]}


async def test_reports_and_series_as_csv(admin: Admin) -> None:
    await tagged_calls(admin)
    status, kind, text = await get_text(admin, "reports?group_by=label:run&format=csv")
    assert status == 200
    assert kind.startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["label:run", "requests", "allowed", "refused", "cost_usd", "unsettled",
                       "estimated", "out_usd"]
    assert sorted((r[0], r[1]) for r in rows[1:]) == [("", "1"), ("r-1", "2")]
    since, until = START_MS, START_MS + 3 * HOUR
    status, kind, text = await get_text(
        admin, f"reports/series?since={since}&until={until}&format=csv")
    assert (status, kind.split(";")[0]) == (200, "text/csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["start", "requests", "refused", "cost_usd"]
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("2025-06-15T12:00:00Z", "1"), ("2025-06-15T13:00:00Z", "1"),
        ("2025-06-15T14:00:00Z", "1")]
    status, _, text = await get_text(
        admin, f"reports/series?since={since}&until={until}&split=vendor&format=csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["start", "vendor", "requests", "refused", "cost_usd"]
    assert {r[1] for r in rows[1:]} == {"openai"}
    assert len(rows) == 4
    # an error stays JSON
    status, kind, _ = await get_text(admin, "reports/series?interval=week&format=csv")
    assert (status, kind.split(";")[0]) == (400, "application/json")


@pytest.mark.parametrize(("query", "param"), [
    ("interval=week", "interval"), ("interval=", "interval"),
    ("since=2025-06-15&until=2025-06-14", "since"), ("since=1000&until=1000", "since"),
    ("interval=hour&since=2020-01-01&until=2025-01-01", "since"),
    ("split=colour", "split"), ("since=yesterday", "since"), ("until=soon", "until"),
    ("scope=planet:mars", "scope"), ("scope=tag:customer=*", "scope"),
    ("format=xml", "format")])
async def test_a_bad_series_parameter_is_refused_naming_it(
        admin: Admin, query: str, param: str) -> None:
    error = await admin.refused("GET", f"reports/series?{query}")
    assert error["param"] == param


@pytest.mark.parametrize(("query", "param"), [
    ("group_by=label:", "group_by"), ("group_by=label:a b", "group_by"),
    ("group_by=label:x'y", "group_by"), ("format=pdf", "format")])
async def test_a_bad_report_parameter_is_refused_naming_it(
        admin: Admin, query: str, param: str) -> None:
    error = await admin.refused("GET", f"reports?{query}")
    assert error["param"] == param


async def test_ten_thousand_points_are_allowed_and_one_more_is_not(admin: Admin) -> None:
    since = START_MS - START_MS % HOUR
    answer = await admin.call(
        "GET", f"reports/series?since={since}&until={since + 10_000 * HOUR}")
    assert len(answer["points"]) == 10_000
    await admin.refused("GET", f"reports/series?since={since}&until={since + 10_001 * HOUR}")


async def test_a_scoped_token_s_csv_holds_only_its_fleet(admin: Admin) -> None:
    await tagged_calls(admin)
    made = await admin.call("POST", "admin-tokens", {
        "name": "a-viewer", "role": "viewer", "scopes": ["agent:agent-a"]}, expect=201)
    resp = await admin.client.get("/admin/v1/reports?group_by=agent&format=csv",
                                  headers={"Authorization": f"Bearer {made['token']}"})
    assert resp.status == 200
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert [r[0] for r in rows] == ["agent", "agent-a"]
    resp = await admin.client.get("/admin/v1/reports/series?scope=agent:agent-b&format=csv",
                                  headers={"Authorization": f"Bearer {made['token']}"})
    assert resp.status == 403


async def test_without_a_range_a_series_ends_with_the_current_interval(admin: Admin) -> None:
    await tagged_calls(admin)  # at 12:00, 13:00, 14:00; the clock then at 15:00
    hours = (await admin.call("GET", "reports/series"))["points"]
    assert len(hours) == 24
    assert (hours[0]["start"], hours[-1]["start"]) == ("2025-06-14T16:00:00Z",
                                                       "2025-06-15T15:00:00Z")
    assert [p["requests"] for p in hours[-4:]] == [1, 1, 1, 0]
    days = (await admin.call("GET", "reports/series?interval=day"))["points"]
    assert len(days) == 30
    assert (days[-1]["start"], days[-1]["requests"]) == ("2025-06-15T00:00:00Z", 3)
    admin.clock.advance(-3 * 3600)  # a call made at this very moment is in its hour
    assert (await admin.call("GET", "reports/series"))["points"][-1]["requests"] == 1
