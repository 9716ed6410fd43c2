"""Where the money went, through real `outlay serve` processes on SQLite and on Redis +
PostgreSQL: calls tagged with X-Outlay-Tags under their keys' labels, the audit filtered by a
label, reports by label, spend over time whose sums are the ledger's, a budget's projection,
CSV, and `outlay report` on the command line."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .harness import ADMIN_TOKEN, Gateway, Launch, micros, unique
from .replicas import Replicas
from .test_e2e_admin import outlay

pytestmark = pytest.mark.e2e

StartReplicas = Callable[..., Replicas]
HOUR = 3_600_000
CHAT = {"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def call(gateway: Gateway, secret: str, tags: str | None) -> None:
    headers = {"Authorization": f"Bearer {secret}"}
    if tags is not None:
        headers["X-Outlay-Tags"] = tags
    resp = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers,
                      timeout=30)
    assert resp.status_code == 200, resp.text


def admin_get(gateway: Gateway, path: str, **params: Any) -> httpx.Response:
    resp = gateway.admin.get(f"/admin/v1/{path}", params=params)
    assert resp.status_code == 200, resp.text
    return resp


def check_where_the_money_went(gateway: Gateway) -> None:
    workflow = unique("wf").replace("-", "_")
    run = unique("r")
    agent = unique("reports")
    minted = gateway.mint_key(agent, labels={"run": run})
    gateway.set_policy(f"agent:{agent}", {"budgets": [{"usd": 5, "period": "day"}]})
    since = int(time.time() * 1000) - 2 * HOUR
    for tags in (f"{workflow}=nightly-billing, customer=acme", f"{workflow}=nightly-billing",
                 f"{workflow}=adhoc, run=not-mine", None):
        call(gateway, minted["key"], tags)

    # tags recorded under the key's labels, and the audit filtered by a label
    nightly = gateway.audit(f"label:{workflow}=nightly-billing")
    assert len(nightly) == 2
    assert nightly[1]["labels"] == {"run": run, workflow: "nightly-billing", "customer": "acme"}
    assert [e["labels"]["run"] for e in gateway.audit(f"label:run={run}")] == [run] * 4
    assert gateway.audit("label:run=not-mine") == []

    # a report by label: a row per value, the calls without it in one row, dearest first
    rows = admin_get(gateway, "reports", group_by=f"label:{workflow}").json()["rows"]
    mine = {r[f"label:{workflow}"]: r for r in rows}
    assert (mine["nightly-billing"]["requests"], mine["adhoc"]["requests"]) == (2, 1)
    assert mine[None]["requests"] >= 1
    assert [micros(r["cost_usd"]) for r in rows] == sorted(
        (micros(r["cost_usd"]) for r in rows), reverse=True)
    by_run = admin_get(gateway, "reports", group_by="label:run", format="csv")
    assert by_run.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(by_run.text)))
    (line,) = [r for r in lines if r["label:run"] == run]
    assert (line["requests"], line["allowed"], line["refused"]) == ("4", "4", "0")
    run_cost = micros(line["cost_usd"])
    assert run_cost == sum(micros(e["cost_usd"]) for e in gateway.audit(f"label:run={run}"))

    # spend over time: every hour of the range, its sums the ledger's
    until = int(time.time() * 1000) + 1
    series = admin_get(gateway, "reports/series", scope=f"agent:{agent}", interval="hour",
                       since=since, until=until, split="model").json()
    points = series["points"]
    assert len(points) in (3, 4)  # two hours ago, through the current hour
    assert sum(p["requests"] for p in points) == 4
    assert sum(micros(p["cost_usd"]) for p in points) == run_cost
    assert [s["model"] for s in series["series"]] == ["gpt-4o-mini"]
    days = admin_get(gateway, "reports/series", scope=f"tag:{workflow}=nightly-billing",
                     interval="day", format="csv").text
    day_rows = list(csv.DictReader(io.StringIO(days)))
    assert len(day_rows) == 30
    assert sum(int(r["requests"]) for r in day_rows) == 2
    bad = gateway.admin.get("/admin/v1/reports/series", params={"interval": "minute"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "interval"

    # where the day will end at this rate
    (budget,) = gateway.usage(f"agent:{agent}")["budgets"]
    assert micros(budget["projected_usd"]) >= micros(budget["spent_usd"]) > 0

    # the command line
    done = outlay(gateway, "report", "--by", "label:run", "--csv", token=ADMIN_TOKEN)
    assert any(r["label:run"] == run and r["requests"] == "4"
               for r in csv.DictReader(io.StringIO(done.stdout)))
    done = outlay(gateway, "report", "--series", "--interval", "day", "--scope",
                  f"agent:{agent}", "--since", "2d")
    assert done.stdout.startswith(f"Spend of agent:{agent} by day")
    assert len(done.stdout.strip().splitlines()) == 2 + 1 + 3  # title, blank, header, days
    done = outlay(gateway, "report", "--series", "--interval", "day", "--scope",
                  "vendor:stripe")
    assert len(done.stdout.strip().splitlines()) == 2 + 1 + 30


def test_where_the_money_went_on_sqlite(launch: Launch) -> None:
    check_where_the_money_went(launch({"simulated": {"latency_ms": 0}}, name="reports"))


def test_where_the_money_went_on_redis_and_postgres(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(1, state_url=redis_url, database=postgres_dsn,
                              config_doc={"simulated": {"latency_ms": 0}})
    check_where_the_money_went(replicas[0])
