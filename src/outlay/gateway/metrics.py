"""Prometheus metrics (GET /metrics): counted by each worker process on the request path, and
summed over every worker of one `outlay serve` when scraped, so any worker answers for all.

The workers of one server share a directory where each leaves a snapshot of its counts about
once a second (`Snapshots`); the worker answering a scrape adds its own live counts to the
others' last snapshots. A worker that died keeps its counts in the sums (counters never go
back), but not its gauges.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from outlay.owner_only import write_private
from outlay.state.base import BudgetLine, Reaped, RetryCounts

# seconds; an LLM call takes from milliseconds (a refusal) to minutes (a long stream)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
           300.0)
WRITE_S = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metrics:
    """One worker's counts since it started."""

    # (route, vendor, decision, code) -> calls; decision: allowed, refused or invalid
    decisions: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    # (vendor, model) -> micro-USD charged by settlements
    spend: dict[tuple[str, str], int] = field(default_factory=dict)
    # (vendor, model) -> micro-USD charged above the reservation (a bound that was wrong)
    overruns: dict[tuple[str, str], int] = field(default_factory=dict)
    # (vendor, settlement) -> reservations settled: settled, settled_estimate, void or unsettled
    settlements: dict[tuple[str, str], int] = field(default_factory=dict)
    # vendor -> micro-USD moved out of the account (refunds, transfers, payouts: not spend)
    moved_out: dict[str, int] = field(default_factory=dict)
    # vendor -> micro-USD given back by payments that will move less than was counted
    returned: dict[str, int] = field(default_factory=dict)
    # route -> per-bucket counts (the last one past every bound), and the sum of seconds
    durations: dict[str, list[int]] = field(default_factory=dict)
    duration_sums: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0  # calls being answered now
    # (reaped worker, settlement) -> reservations the reaper settled: unsettled (charged
    # in full: the worker died or the lease ran out) or void (answered 503 before it held)
    reaped: dict[tuple[str, str], int] = field(default_factory=dict)
    reaped_micros: dict[str, int] = field(default_factory=dict)  # reaped worker -> charged
    # the settlements the worker's store keeps to apply again (StateStore.settlement_retries)
    retries: Callable[[], RetryCounts] | None = None
    # calls that waited for calls in flight to settle (hold_wait_ms), by how the wait
    # ended (admitted, refused), and the seconds they waited
    hold_waits: dict[str, int] = field(default_factory=dict)
    hold_seconds: float = 0.0
    # (spans exported, spans dropped) by the worker's telemetry exporter (None: off)
    spans: Callable[[], tuple[int, int]] | None = None
    # calls that waited in the queue for room in a rate window (on_rate_limit: queue), the
    # seconds they waited, and how many wait now (the worker's RateQueue)
    queue_waits: int = 0
    queue_seconds: float = 0.0
    queue_depth: Callable[[], int] | None = None

    def decided(self, route: str, vendor: str, decision: str, code: str = "") -> None:
        label = (route, vendor, decision, code)
        self.decisions[label] = self.decisions.get(label, 0) + 1

    def settled(self, vendor: str, model: str, settlement: str, micros: int,
                over: int = 0, flow: str = "spend") -> None:
        key = (vendor, settlement)
        self.settlements[key] = self.settlements.get(key, 0) + 1
        if micros and flow == "out":
            self.moved_out[vendor] = self.moved_out.get(vendor, 0) + micros
        elif micros:
            self.spend[(vendor, model)] = self.spend.get((vendor, model), 0) + micros
        if over:
            self.overruns[(vendor, model)] = self.overruns.get((vendor, model), 0) + over

    def reaped_from(self, line: Reaped) -> None:
        for settlement, n in (("unsettled", line.charged), ("void", line.voided)):
            if n:
                label = (line.worker, settlement)
                self.reaped[label] = self.reaped.get(label, 0) + n
        if line.micros:
            self.reaped_micros[line.worker] = self.reaped_micros.get(line.worker, 0) + line.micros

    def gave_back(self, vendor: str, micros: int) -> None:
        self.returned[vendor] = self.returned.get(vendor, 0) + micros

    def held(self, outcome: str, seconds: float) -> None:
        self.hold_waits[outcome] = self.hold_waits.get(outcome, 0) + 1
        self.hold_seconds += seconds

    def queued(self, seconds: float) -> None:
        self.queue_waits += 1
        self.queue_seconds += seconds

    def observe(self, route: str, seconds: float) -> None:
        counts = self.durations.get(route)
        if counts is None:
            counts = self.durations[route] = [0] * (len(BUCKETS) + 1)
            self.duration_sums[route] = 0.0
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sums[route] += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON-able lists, with this worker's gauges."""
        return {
            "decisions": [[*k, v] for k, v in self.decisions.items()],
            "spend": [[*k, v] for k, v in self.spend.items()],
            "overruns": [[*k, v] for k, v in self.overruns.items()],
            "settlements": [[*k, v] for k, v in self.settlements.items()],
            "returned": [[k, v] for k, v in self.returned.items()],
            "moved_out": [[k, v] for k, v in self.moved_out.items()],
            "durations": [[r, c, self.duration_sums[r]] for r, c in self.durations.items()],
            "reaped": [[*k, v] for k, v in self.reaped.items()],
            "reaped_usd": [[k, v] for k, v in self.reaped_micros.items()],
            "in_flight": self.in_flight,
            **_retry_counts(self.retries),
            "hold_waits": [[k, v] for k, v in self.hold_waits.items()],
            "hold_seconds": self.hold_seconds,
            **_span_counts(self.spans),
            "queue_waits": self.queue_waits,
            "queue_seconds": self.queue_seconds,
            "queue_depth": self.queue_depth() if self.queue_depth is not None else 0,
        }


def _retry_counts(source: Callable[[], RetryCounts] | None) -> dict[str, int]:
    counts = RetryCounts(0, 0, 0) if source is None else source()
    return {"settle_retries": counts.retried, "settle_abandoned": counts.abandoned,
            "settle_waiting": counts.waiting}


def _span_counts(source: Callable[[], tuple[int, int]] | None) -> dict[str, int]:
    exported, dropped = (0, 0) if source is None else source()
    return {"spans_exported": exported, "spans_dropped": dropped}


def render(snapshots: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]],
           budgets: Sequence[BudgetLine] | None = None) -> str:
    """The Prometheus text exposition of the summed counts of `snapshots`, of the gauges of
    the `live` ones (a subset: the workers still running), and of the budgets read from the
    state store (None: it could not be read)."""
    decisions: dict[tuple[str, ...], int] = {}
    spend: dict[tuple[str, ...], int] = {}
    overruns: dict[tuple[str, ...], int] = {}
    settlements: dict[tuple[str, ...], int] = {}
    returned: dict[tuple[str, ...], int] = {}
    moved_out: dict[tuple[str, ...], int] = {}
    durations: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    reaped: dict[tuple[str, ...], int] = {}
    reaped_usd: dict[tuple[str, ...], int] = {}
    retries = abandoned = spans_exported = spans_dropped = 0
    hold_waits: dict[tuple[str, ...], int] = {}
    hold_seconds = queue_seconds = 0.0
    queue_waits = 0
    for snap in snapshots:
        queue_waits += int(snap.get("queue_waits", 0))
        queue_seconds += float(snap.get("queue_seconds", 0.0))
        _add(hold_waits, snap.get("hold_waits", ()))
        hold_seconds += float(snap.get("hold_seconds", 0.0))
        _add(reaped, snap.get("reaped", ()))
        _add(reaped_usd, snap.get("reaped_usd", ()))
        retries += int(snap.get("settle_retries", 0))
        abandoned += int(snap.get("settle_abandoned", 0))
        spans_exported += int(snap.get("spans_exported", 0))
        spans_dropped += int(snap.get("spans_dropped", 0))
        _add(decisions, snap.get("decisions", ()))
        _add(spend, snap.get("spend", ()))
        _add(overruns, snap.get("overruns", ()))
        _add(settlements, snap.get("settlements", ()))
        _add(returned, snap.get("returned", ()))
        _add(moved_out, snap.get("moved_out", ()))
        for route, counts, total in snap.get("durations", ()):
            into = durations.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, n in enumerate(counts[:len(into)]):
                into[i] += n
            sums[route] = sums.get(route, 0.0) + total
    live = list(live)
    out: list[str] = []
    _family(out, "outlay_decisions_total", "counter",
            "Agent calls decided, by route, vendor, decision (allowed, refused, invalid) and "
            "refusal code.",
            (_labels(route=r, vendor=v, decision=d, code=c) + f" {n}"
             for (r, v, d, c), n in sorted(decisions.items())))
    _family(out, "outlay_spend_usd_total", "counter",
            "USD charged by settled calls, by vendor and model (model empty for vendor calls).",
            (_labels(vendor=v, model=m) + f" {_usd(n)}" for (v, m), n in sorted(spend.items())))
    _family(out, "outlay_moved_out_usd_total", "counter",
            "USD moved out of the account by settled vendor calls (refunds, transfers, "
            "payouts; not in outlay_spend_usd_total), by vendor.",
            (_labels(vendor=v) + f" {_usd(n)}" for (v,), n in sorted(moved_out.items())))
    _family(out, "outlay_settlement_overrun_usd_total", "counter",
            "USD charged by settlements above their reservation (what the provider billed "
            "past a bound that was wrong), by vendor and model.",
            (_labels(vendor=v, model=m) + f" {_usd(n)}"
             for (v, m), n in sorted(overruns.items())))
    _family(out, "outlay_settlements_total", "counter",
            "Reservations settled, by vendor and settlement (settled: to the reported cost; "
            "settled_estimate: to what Outlay counted of an answer without usage; "
            "void: nothing owed; unsettled: charged in full).",
            (_labels(vendor=v, settlement=s) + f" {n}"
             for (v, s), n in sorted(settlements.items())))
    _family(out, "outlay_vendor_returned_usd_total", "counter",
            "USD given back to the budgets by payments that will move less than was counted "
            "for them (a partial capture, a cancel), by vendor.",
            (_labels(vendor=v) + f" {_usd(n)}" for (v,), n in sorted(returned.items())))
    _family(out, "outlay_reservations_reaped_total", "counter",
            "Reservations settled by the reaper, by the worker that held them and settlement "
            "(unsettled: charged in full, as the worker died or the lease ran out; void: "
            "never sent, or answered 503 before the reservation was made).",
            (_labels(worker=w, settlement=st) + f" {n}" for (w, st), n in sorted(reaped.items())))
    _family(out, "outlay_reaped_usd_total", "counter",
            "USD charged by the reaper, by the worker whose reservations it charged in full.",
            (_labels(worker=w) + f" {_usd(n)}" for (w,), n in sorted(reaped_usd.items())))
    _family(out, "outlay_settlement_retries_total", "counter",
            "Attempts to apply again a settlement the state store failed to write.",
            [f" {retries}"])
    _family(out, "outlay_settlements_waiting", "gauge",
            "Settlements the state store failed to write, kept to be applied again.",
            [f" {sum(int(s.get('settle_waiting', 0)) for s in live)}"])
    _family(out, "outlay_settlements_abandoned_total", "counter",
            "Settlements not kept because too many waited; the reaper charges their "
            "reservations in full.",
            [f" {abandoned}"])
    _family(out, "outlay_hold_waits_total", "counter",
            "Calls that waited for calls in flight to settle because only their reservations "
            "left no room under a hard budget, by how the wait ended (admitted, refused).",
            (_labels(outcome=o) + f" {n}" for (o,), n in sorted(hold_waits.items())))
    _family(out, "outlay_hold_wait_seconds_total", "counter",
            "Seconds calls spent waiting for calls in flight to settle.",
            [f" {_float(hold_seconds)}"])
    for outcome, text, n in (
            ("exported", "Call spans the OTLP collector accepted (telemetry.otlp_endpoint).",
             spans_exported),
            ("dropped", "Call spans dropped: the export queue was full, or the collector "
             "failed, refused or did not answer in time.", spans_dropped)):
        _family(out, f"outlay_telemetry_spans_{outcome}_total", "counter", text, [f" {n}"])
    _family(out, "outlay_queue_waiting", "gauge",
            "Calls waiting in the gateway for room in a rate window (on_rate_limit: queue).",
            [f" {sum(int(s.get('queue_depth', 0)) for s in live)}"])
    _family(out, "outlay_queue_waits_total", "counter",
            "Calls that waited in the queue, however the wait ended (admitted, or refused "
            "429 after it).", [f" {queue_waits}"])
    _family(out, "outlay_queue_wait_seconds_total", "counter",
            "Seconds calls spent waiting in the queue.", [f" {_float(queue_seconds)}"])
    lines = []
    for route, counts in sorted(durations.items()):
        running = 0
        for bound, n in zip((*BUCKETS, None), counts, strict=True):
            running += n
            le = "+Inf" if bound is None else _float(bound)
            lines.append("_bucket" + _labels(route=route, le=le) + f" {running}")
        lines.append("_sum" + _labels(route=route) + f" {_float(sums[route])}")
        lines.append("_count" + _labels(route=route) + f" {running}")
    _family(out, "outlay_request_duration_seconds", "histogram",
            "Time from a call's arrival to the end of its answer, by route.", lines)
    _family(out, "outlay_calls_in_flight", "gauge", "Agent calls being answered now.",
            [f" {sum(int(s.get('in_flight', 0)) for s in live)}"])
    _family(out, "outlay_workers", "gauge", "Worker processes answering for this server.",
            [f" {len(live)}"])
    _family(out, "outlay_state_up", "gauge",
            "1 when the state store answered this scrape, 0 when it did not.",
            [f" {0 if budgets is None else 1}"])
    texts = {"cap": "The cap of each budget (keys' budgets are not exported).",
             "spent": "USD settled against each budget in its current period (spend, or "
                      "money moved out for a flow=out budget).",
             "reserved": "USD held for calls in flight against each budget."}
    for name, text in texts.items():
        _family(out, f"outlay_budget_{name}_usd", "gauge", text,
                (_labels(scope=b.scope, period=b.period, mode=b.mode, flow=b.flow)
                 + f" {_usd(getattr(b, name))}" for b in budgets or ()))
    return "\n".join(out) + "\n"


def _add(into: dict[tuple[str, ...], int], rows: Iterable[list[Any]]) -> None:
    for *labels, n in rows:
        key = tuple(str(x) for x in labels)
        into[key] = into.get(key, 0) + int(n)


def _family(out: list[str], name: str, kind: str, text: str, samples: Iterable[str]) -> None:
    out.append(f"# HELP {name} {text}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(name + sample for sample in samples)


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _usd(micros: int) -> str:
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}"


def _float(value: float) -> str:
    return repr(float(value))


class Snapshots:
    """The workers' shared directory of snapshots, one file per worker (`<pid>-<n>.json`,
    replaced whole each time; the suffix keeps a reused pid from overwriting a dead
    worker's counts)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.pid = os.getpid()
        self.path = self.directory / f"{self.pid}-{time.monotonic_ns()}.json"

    def write(self, snapshot: Mapping[str, Any]) -> None:
        partial = self.path.with_suffix(".tmp")
        write_private(partial, orjson.dumps(snapshot))  # scope names: the owner's only
        os.replace(partial, self.path)

    def others(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(every other worker's last snapshot, those of the workers still running)."""
        every, live = [], []
        for path in self.directory.glob("*.json"):
            pid, _, _ = path.stem.partition("-")
            if path == self.path or not pid.isdigit():
                continue
            try:
                snap = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # gone, or not a snapshot: workers replace theirs whole
            every.append(snap)
            if _running(int(pid)):
                live.append(snap)
        return every, live


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


async def keep_writing(snapshots: Snapshots, metrics: Metrics) -> None:
    """Leave this worker's snapshot for the others every WRITE_S, until cancelled, and once
    more then, so a stopping worker's last counts stay in the sums."""
    try:
        while True:
            with contextlib.suppress(OSError):
                snapshots.write(metrics.snapshot())
            await asyncio.sleep(WRITE_S)
    finally:
        with contextlib.suppress(OSError):
            snapshots.write({**metrics.snapshot(), "in_flight": 0})


def exposition(metrics: Metrics, snapshots: Snapshots | None,
               budgets: Sequence[BudgetLine] | None = None) -> str:
    """What GET /metrics answers: this worker's live counts, the other workers', and the
    budgets as the state store has them."""
    own = metrics.snapshot()
    every, live = snapshots.others() if snapshots is not None else ([], [])
    return render([own, *every], [own, *live], budgets)
