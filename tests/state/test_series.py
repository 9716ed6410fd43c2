"""Spend over time and reports by label, on every store: a series has a point for every
interval of its range, and its sums are the ledger's (kept in hourly rollups as calls are
written and settled)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.policy.money import usd_to_micros
from outlay.policy.series import SeriesQuery, series_answer
from outlay.state.base import NewKey, Outcome, StateStore, Ticket

from .support import Clock, ms, ticket

HOUR = 3_600_000


def at(hour: int, minute: int = 0, day: int = 14) -> int:
    return ms(datetime(2024, 3, day, hour, minute, tzinfo=UTC))


def tagged(t: Ticket, **tags: str) -> Ticket:
    return dataclasses.replace(t, tags=tags)


async def ledger_sums(store: StateStore, scope: str, since: int, until: int
                      ) -> tuple[int, int, int]:
    """(requests, refused, spend) of a scope's ledger rows in [since, until), from the
    audit."""
    rows = [r for r in await store.audit(scope, 1_000_000)
            if since <= ms(datetime.fromisoformat(r["time"].replace("Z", "+00:00"))) < until]
    return (sum(r["decision"] != "credit" for r in rows),
            sum(r["decision"] in ("refused", "invalid") for r in rows),
            sum(usd_to_micros(r["cost_usd"]) for r in rows if r["flow"] == "spend"))


def totals(answer: dict[str, object]) -> tuple[int, int, int]:
    points = answer["points"]
    assert isinstance(points, list)
    return (sum(p["requests"] for p in points), sum(p["refused"] for p in points),
            sum(usd_to_micros(p["cost_usd"]) for p in points))


async def spend_in_hours(store: StateStore, clock: Clock) -> dict[str, str]:
    """Calls at 12:10, 14:30 (and a refusal), 17:05 (and one still in flight): hours 13,
    15 and 16 have none."""
    await store.create_agent("bot", "fleet")
    record, secret = await store.create_key(NewKey(agent="bot", labels={"run": "r-1"}))
    _, other = await store.create_key(NewKey(agent="other"))
    await store.put_policy("agent:other", parse_policy({"budgets": [{"usd": 0.01}]}))
    calls = [(at(12, 10), secret, "openai", 1_500, {"workflow": "nightly"}),
             (at(12, 40), other, "stripe", 4_500, {}),
             (at(14, 30), secret, "stripe", 2_500, {"workflow": "nightly"}),
             (at(17, 5), other, "openai", 700, {"workflow": "adhoc"})]
    for moment, key, vendor, cost, tags in calls:
        clock.now = moment
        held = await store.reserve(tagged(ticket(key, cost, vendor=vendor), **tags))
        await store.settle(Outcome(held.id, 200, cost_micros=cost))
    clock.now = at(14, 45)
    with pytest.raises(BudgetExceeded):
        await store.reserve(ticket(other, 9_000))
    clock.now = at(17, 30)
    await store.reserve(ticket(secret, 800))  # in flight: a request, nothing spent yet
    return {"key": record.id}


@pytest.mark.parametrize("scope", [
    "global", "agent:bot", "agent:other", "group:fleet", "vendor:stripe", "vendor:openai",
    "tag:workflow=nightly", "tag:run=r-1", "key"])
async def test_every_hour_is_present_and_the_sums_are_the_ledger_s(
        store: StateStore, clock: Clock, scope: str) -> None:
    made = await spend_in_hours(store, clock)
    scope = f"key:{made['key']}" if scope == "key" else scope
    query = SeriesQuery(scope, "hour", at(11, 30), at(19))
    answer = series_answer(query, await store.series(query))
    assert [p["start"] for p in answer["points"]] == [
        f"2024-03-14T{h}:00:00Z" for h in range(11, 19)]
    assert totals(answer) == await ledger_sums(store, scope, at(11), at(19))
    for point, hour in zip(answer["points"], range(11, 19), strict=True):
        assert (point["requests"], point["refused"], usd_to_micros(point["cost_usd"])) == (
            await ledger_sums(store, scope, at(hour), at(hour) + HOUR)), (scope, hour)


async def test_the_hours_of_the_global_series(store: StateStore, clock: Clock) -> None:
    await spend_in_hours(store, clock)
    query = SeriesQuery("global", "hour", at(12), at(18))
    points = series_answer(query, await store.series(query))["points"]
    assert [(p["requests"], p["refused"], p["cost_usd"]) for p in points] == [
        (2, 0, "0.006"), (0, 0, "0"), (2, 1, "0.0025"), (0, 0, "0"), (0, 0, "0"),
        (2, 0, "0.0007")]


async def test_a_split_gives_a_series_per_value_dearest_first(
        store: StateStore, clock: Clock) -> None:
    await spend_in_hours(store, clock)
    query = SeriesQuery("global", "hour", at(12), at(18), "vendor")
    answer = series_answer(query, await store.series(query))
    assert [(s["vendor"], totals(s)) for s in answer["series"]] == [
        ("stripe", (2, 0, 7_000)), ("openai", (4, 1, 2_200))]
    assert all(len(s["points"]) == 6 for s in answer["series"])
    codes = SeriesQuery("agent:other", "hour", at(12), at(18), "code")
    by_code = series_answer(codes, await store.series(codes))["series"]
    assert [(s["code"], totals(s)[:2]) for s in by_code] == [
        (None, (2, 0)), ("budget_exceeded", (1, 1))]


async def test_days_sum_their_hours(store: StateStore, clock: Clock) -> None:
    await spend_in_hours(store, clock)
    clock.now = at(9, day=16)
    held = await store.reserve(ticket((await store.create_key(NewKey(agent="late")))[1], 300))
    await store.settle(Outcome(held.id, 200, cost_micros=300))
    query = SeriesQuery("global", "day", at(5, day=13), at(0, day=17))
    points = series_answer(query, await store.series(query))["points"]
    assert [(p["start"], p["requests"], p["cost_usd"]) for p in points] == [
        ("2024-03-13T00:00:00Z", 0, "0"), ("2024-03-14T00:00:00Z", 6, "0.0092"),
        ("2024-03-15T00:00:00Z", 0, "0"), ("2024-03-16T00:00:00Z", 1, "0.0003")]


async def test_a_settlement_moves_its_call_to_the_model_it_was_served_by(
        store: StateStore, clock: Clock) -> None:
    _, secret = await store.create_key(NewKey(agent="bot"))
    held = await store.reserve(ticket(secret, 1_000))
    query = SeriesQuery("global", "hour", at(12), at(13), "model")
    before = series_answer(query, await store.series(query))["series"]
    assert [(s["model"], totals(s)) for s in before] == [("gpt-4o-mini", (1, 0, 0))]
    await store.settle(Outcome(held.id, 200, cost_micros=900, model="gpt-4o-mini-2024-07-18"))
    after = series_answer(query, await store.series(query))["series"]
    assert [(s["model"], totals(s)) for s in after] == [
        ("gpt-4o-mini-2024-07-18", (1, 0, 900))]


async def test_a_report_by_label_ranks_each_value_by_cost(
        store: StateStore, clock: Clock) -> None:
    await spend_in_hours(store, clock)
    rows = await store.report("label:workflow", None)
    assert [(r["label:workflow"], r["requests"], r["refused"], r["cost_usd"]) for r in rows] \
        == [(None, 3, 1, "0.0045"), ("nightly", 2, 0, "0.004"), ("adhoc", 1, 0, "0.0007")]
    runs = await store.report("label:run", None)
    assert [(r["label:run"], r["requests"], r["allowed"], r["cost_usd"], r["unsettled"],
             r["out_usd"]) for r in runs] == [
        (None, 3, 2, "0.0052", 0, "0"), ("r-1", 3, 3, "0.004", 0, "0")]
    # the key's label wins over a tag of the same name: the run cannot be re-labelled
    _, secret = await store.create_key(NewKey(agent="bot", labels={"run": "r-2"}))
    held = await store.reserve(tagged(ticket(secret, 100), run="r-9"))
    await store.settle(Outcome(held.id, 200, cost_micros=100))
    assert [r["label:run"] for r in await store.report("label:run", None)] == [
        None, "r-1", "r-2"]
    assert [r["request_id"] for r in await store.audit("tag:run=r-2", 10)] == [held.id]


@pytest.mark.parametrize("scope", ["global", "group:fleet", "vendor:openai", "agent:bot"])
async def test_a_split_by_agent_sums_each_agent_s_calls(
        store: StateStore, clock: Clock, scope: str) -> None:
    await spend_in_hours(store, clock)
    query = SeriesQuery(scope, "hour", at(12), at(18), "agent")
    answer = series_answer(query, await store.series(query))
    found = {s["agent"]: totals(s) for s in answer["series"]}
    for agent in ("bot", "other"):
        rows = [r for r in await store.audit(f"agent:{agent}", 1000)
                if r in await store.audit(scope, 1000)]
        expected = (len(rows), sum(r["decision"] == "refused" for r in rows),
                    sum(usd_to_micros(r["cost_usd"]) for r in rows))
        assert found.get(agent, (0, 0, 0)) == expected, (scope, agent)
    assert totals(answer) == tuple(map(sum, zip(*found.values(), strict=True)))
