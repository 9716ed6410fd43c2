"""The metrics' counting, their Prometheus text and the workers' shared snapshots
(gateway/metrics.py), read back with prometheus_client's own parser."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from outlay.gateway.metrics import BUCKETS, Metrics, Snapshots, exposition, render
from outlay.state.base import BudgetLine, Reaped, RetryCounts


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def kinds(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_span_counts_are_summed_over_workers() -> None:
    one, two = Metrics(), Metrics()
    assert samples(render([one.snapshot()], [one.snapshot()]))[
        ("outlay_telemetry_spans_dropped_total", ())] == 0
    one.spans = lambda: (5, 1)
    two.spans = lambda: (2, 3)
    got = samples(render([one.snapshot(), two.snapshot()], [one.snapshot()]))
    assert got[("outlay_telemetry_spans_exported_total", ())] == 7
    assert got[("outlay_telemetry_spans_dropped_total", ())] == 4


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_counts_render_as_prometheus_text() -> None:
    m = Metrics()
    m.decided("openai.chat", "openai", "allowed")
    m.decided("openai.chat", "openai", "allowed")
    m.decided("openai.chat", "openai", "refused", "budget_exceeded")
    m.settled("openai", "gpt-4o-mini", "settled", 1_234_567)
    m.settled("openai", "gpt-4o-mini", "void", 0)
    m.settled("openai", "gpt-4o-mini", "settled", 500_000, 200_000)
    m.settled("stripe", "", "settled", 5_000_000, flow="out")  # a refund: not spend
    m.observe("openai.chat", 0.003)
    m.observe("openai.chat", 0.2)
    m.observe("openai.chat", 1_000.0)
    text = render([m.snapshot()], [m.snapshot()])
    got = samples(text)
    assert got[("outlay_decisions_total", (("code", ""), ("decision", "allowed"),
                                           ("route", "openai.chat"), ("vendor", "openai")))] == 2
    assert got[("outlay_decisions_total", (
        ("code", "budget_exceeded"), ("decision", "refused"), ("route", "openai.chat"),
        ("vendor", "openai")))] == 1
    assert got[("outlay_spend_usd_total", (("model", "gpt-4o-mini"), ("vendor", "openai")))] \
        == 1.734567
    assert got[("outlay_moved_out_usd_total", (("vendor", "stripe"),))] == 5.0
    assert not any(n == "outlay_spend_usd_total" and ("vendor", "stripe") in labels
                   for n, labels in got)
    assert got[("outlay_settlement_overrun_usd_total",
                (("model", "gpt-4o-mini"), ("vendor", "openai")))] == 0.2
    assert got[("outlay_settlements_total", (("settlement", "void"), ("vendor", "openai")))] == 1
    route = (("route", "openai.chat"),)
    assert got[("outlay_request_duration_seconds_count", route)] == 3
    assert abs(got[("outlay_request_duration_seconds_sum", route)] - 1000.203) < 1e-9
    bucket = "outlay_request_duration_seconds_bucket"
    assert got[(bucket, (("le", "0.005"), *route))] == 1
    assert got[(bucket, (("le", "0.25"), *route))] == 2
    assert got[(bucket, (("le", str(BUCKETS[-1])), *route))] == 2
    assert got[(bucket, (("le", "+Inf"), *route))] == 3
    assert kinds(text) == {
        "outlay_decisions": "counter", "outlay_spend_usd": "counter",
        "outlay_settlement_overrun_usd": "counter", "outlay_moved_out_usd": "counter",
        "outlay_settlements": "counter", "outlay_vendor_returned_usd": "counter",
        "outlay_reservations_reaped": "counter", "outlay_reaped_usd": "counter",
        "outlay_hold_waits": "counter", "outlay_hold_wait_seconds": "counter",
        "outlay_request_duration_seconds": "histogram", "outlay_calls_in_flight": "gauge",
        "outlay_workers": "gauge", "outlay_state_up": "gauge", "outlay_budget_cap_usd": "gauge",
        "outlay_budget_spent_usd": "gauge", "outlay_budget_reserved_usd": "gauge",
        "outlay_settlement_retries": "counter", "outlay_settlements_waiting": "gauge",
        "outlay_settlements_abandoned": "counter", "outlay_queue_waiting": "gauge",
        "outlay_queue_waits": "counter", "outlay_queue_wait_seconds": "counter",
        "outlay_telemetry_spans_exported": "counter",
        "outlay_telemetry_spans_dropped": "counter"}


def test_what_payments_gave_back_adds_up_over_workers() -> None:
    one, two = Metrics(), Metrics()
    one.gave_back("stripe", 15_000_000)
    one.gave_back("stripe", 500_000)
    two.gave_back("stripe", 1)
    got = samples(render([one.snapshot(), two.snapshot()], []))
    assert got[("outlay_vendor_returned_usd_total", (("vendor", "stripe"),))] == 15.500001


def test_waits_for_calls_in_flight_are_counted_by_outcome_and_summed_over_workers() -> None:
    one, other = Metrics(), Metrics()
    one.held("admitted", 0.25)
    one.held("refused", 2.0)
    other.held("admitted", 0.5)
    got = samples(render([one.snapshot(), other.snapshot()], []))
    assert got[("outlay_hold_waits_total", (("outcome", "admitted"),))] == 2
    assert got[("outlay_hold_waits_total", (("outcome", "refused"),))] == 1
    assert got[("outlay_hold_wait_seconds_total", ())] == 2.75
    nothing = samples(render([Metrics().snapshot()], []))
    assert nothing[("outlay_hold_wait_seconds_total", ())] == 0


def test_a_duration_on_a_bucket_bound_counts_in_that_bucket() -> None:
    m = Metrics()
    m.observe("r", BUCKETS[0])
    got = samples(render([m.snapshot()], []))
    assert got[("outlay_request_duration_seconds_bucket", (("le", "0.005"), ("route", "r")))] == 1


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.decided('vendor."x"\\\n', "v", "invalid", "invalid_request")
    got = samples(render([m.snapshot()], []))
    assert any(dict(labels).get("route") == 'vendor."x"\\\n' for _, labels in got)


def test_an_empty_server_still_answers_every_family() -> None:
    text = render([Metrics().snapshot()], [Metrics().snapshot()])
    got = samples(text)
    assert got[("outlay_calls_in_flight", ())] == 0
    assert got[("outlay_workers", ())] == 1
    assert not [name for name, _ in got if name.startswith("outlay_reaped")]


def test_workers_counts_add_up_and_only_live_workers_gauges_count(tmp_path: Path) -> None:
    mine = Metrics()
    mine.decided("openai.chat", "openai", "allowed")
    mine.in_flight = 2
    snapshots = Snapshots(str(tmp_path))
    snapshots.write(mine.snapshot())  # its own file is never read back: live counts are
    live = Metrics()
    live.decided("openai.chat", "openai", "allowed")
    live.in_flight = 3
    live.reaped_from(Reaped("w_a_1_ff", charged=2, micros=1_500, voided=1))
    mine.reaped_from(Reaped("w_a_1_ff", charged=1, micros=500))
    dead = Metrics()
    dead.decided("openai.chat", "openai", "allowed")
    dead.in_flight = 5  # a worker killed mid-call: its gauge no longer counts
    (tmp_path / f"{os.getppid()}-1.json").write_bytes(orjson.dumps(live.snapshot()))
    (tmp_path / f"{a_dead_pid()}-1.json").write_bytes(orjson.dumps(dead.snapshot()))
    (tmp_path / "notes.json").write_bytes(b"{}")  # not a worker's
    (tmp_path / "7-1.json").write_bytes(b"{half a snap")  # torn: skipped
    mine.decided("openai.chat", "openai", "allowed")  # counted live, after its last write
    got = samples(exposition(mine, snapshots))
    allowed = ("outlay_decisions_total", (("code", ""), ("decision", "allowed"),
                                          ("route", "openai.chat"), ("vendor", "openai")))
    assert got[allowed] == 4
    assert got[("outlay_calls_in_flight", ())] == 5
    assert got[("outlay_workers", ())] == 2
    reaped = (("settlement", "unsettled"), ("worker", "w_a_1_ff"))
    assert got[("outlay_reservations_reaped_total", reaped)] == 3
    assert got[("outlay_reservations_reaped_total", (("settlement", "void"),
                                                      ("worker", "w_a_1_ff")))] == 1
    assert got[("outlay_reaped_usd_total", (("worker", "w_a_1_ff"),))] == 0.002


def test_settlement_retries_add_up_and_only_live_workers_waiting_count(
        tmp_path: Path) -> None:
    mine, live, dead = Metrics(), Metrics(), Metrics()
    mine.retries = lambda: RetryCounts(waiting=1, retried=4, abandoned=0)
    live.retries = lambda: RetryCounts(waiting=2, retried=3, abandoned=1)
    dead.retries = lambda: RetryCounts(waiting=7, retried=5, abandoned=0)  # gone for good
    snapshots = Snapshots(str(tmp_path))
    (tmp_path / f"{os.getppid()}-1.json").write_bytes(orjson.dumps(live.snapshot()))
    (tmp_path / f"{a_dead_pid()}-1.json").write_bytes(orjson.dumps(dead.snapshot()))
    got = samples(exposition(mine, snapshots))
    assert got[("outlay_settlement_retries_total", ())] == 12
    assert got[("outlay_settlements_waiting", ())] == 3
    assert got[("outlay_settlements_abandoned_total", ())] == 1


def test_without_a_store_no_settlement_waits() -> None:
    got = samples(render([Metrics().snapshot()], [Metrics().snapshot()]))
    assert got[("outlay_settlement_retries_total", ())] == 0
    assert got[("outlay_settlements_waiting", ())] == 0


def test_a_snapshot_is_replaced_whole(tmp_path: Path) -> None:
    snapshots = Snapshots(str(tmp_path))
    m = Metrics()
    for _ in range(3):
        m.decided("openai.chat", "openai", "allowed")
        snapshots.write(m.snapshot())
    (written,) = list(tmp_path.iterdir())
    data: dict[str, Any] = orjson.loads(written.read_bytes())
    assert data["decisions"] == [["openai.chat", "openai", "allowed", "", 3]]
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # scope names: the owner's only


def test_without_a_shared_directory_a_worker_answers_for_itself() -> None:
    m = Metrics()
    m.in_flight = 1
    got = samples(exposition(m, None))
    assert got[("outlay_workers", ())] == 1
    assert got[("outlay_calls_in_flight", ())] == 1


def test_budgets_render_as_gauges_and_the_state_as_up() -> None:
    lines = [BudgetLine("agent:bot", "day", "hard", 1_000_000, 250_001, 3),
             BudgetLine('group:"odd"', "month", "soft", 5_000_000, 0, 0),
             BudgetLine("agent:bot", "day", "hard", 50_000_000, 7, 0, "out")]
    got = samples(render([Metrics().snapshot()], [], lines))
    bot = (("flow", "spend"), ("mode", "hard"), ("period", "day"), ("scope", "agent:bot"))
    assert got[("outlay_budget_cap_usd", bot)] == 1.0
    assert got[("outlay_budget_spent_usd", bot)] == 0.250001
    assert got[("outlay_budget_reserved_usd", bot)] == 0.000003
    odd = (("flow", "spend"), ("mode", "soft"), ("period", "month"),
           ("scope", 'group:"odd"'))
    assert got[("outlay_budget_cap_usd", odd)] == 5.0
    out = (("flow", "out"), *bot[1:])
    assert (got[("outlay_budget_cap_usd", out)], got[("outlay_budget_spent_usd", out)]) == (
        50.0, 0.000007)
    assert got[("outlay_state_up", ())] == 1


def test_a_store_that_did_not_answer_shows_down_and_no_budgets() -> None:
    got = samples(render([Metrics().snapshot()], [], None))
    assert got[("outlay_state_up", ())] == 0
    assert not any(name.startswith("outlay_budget_") for name, _ in got)


def test_queue_waits_sum_over_workers_and_the_depth_counts_live_workers_only() -> None:
    one, other, dead = Metrics(), Metrics(), Metrics()
    one.queued(0.5)
    one.queued(1.5)
    other.queued(0.25)
    one.queue_depth, other.queue_depth, dead.queue_depth = (lambda: 3), (lambda: 4), (lambda: 9)
    got = samples(render([one.snapshot(), other.snapshot(), dead.snapshot()],
                         [one.snapshot(), other.snapshot()]))
    assert got[("outlay_queue_waits_total", ())] == 3
    assert got[("outlay_queue_wait_seconds_total", ())] == 2.25
    assert got[("outlay_queue_waiting", ())] == 7

