"""The bar of the benchmark report (bench/report.py): which figures pass or fail which line.
No benchmark runs here: the rows are made up."""

from __future__ import annotations

import sys
from typing import Any

from tests.bench.test_measure import BENCH, _load

sys.path.insert(0, str(BENCH))  # report imports its neighbours by name
report = _load("report")
measure = sys.modules["bench_measure"]


def _wrk(rps: float, p50_ms: float) -> Any:
    return measure.WrkResult(requests=int(rps * 10), duration_s=10.0, errors=0, non_2xx=0,
                             p50_ms=p50_ms, p90_ms=p50_ms, p99_ms=p50_ms, mean_ms=p50_ms,
                             max_ms=p50_ms)


def _row(key: str, rps32: float, p50_1: float, ttfb: float | None = None) -> Any:
    row = report.Row(key, key, "")
    row.runs = {1: [_wrk(1000, p50_1)], 32: [_wrk(rps32, p50_1 * 10)]}
    if ttfb is not None:
        row.stream = sys.modules["load"].StreamResult(100, ttfb, ttfb, ttfb, 0)
    return row


def _lines(**redis: float) -> list[str]:
    rows = [_row("direct", 100_000, 0.01, 0.1), _row("passthrough", 6000, 0.4, 0.5),
            _row("outlay", 5400, 0.5, 0.8), _row("outlay-grown", 5300, 0.52),
            _row("outlay-redis-pg", redis.get("rps32", 4000), 0.8, 1.2)]
    return report.bar(rows)


def test_every_line_of_the_bar_passes_on_good_figures() -> None:
    lines = _lines()
    assert len(lines) == 5
    assert all(line.startswith("- **PASS**") for line in lines), lines
    assert any("Redis + PostgreSQL" in line and "= 67%" in line for line in lines)


def test_redis_postgres_under_its_share_fails() -> None:
    lines = _lines(rps32=2000)  # 33% of the pass-through's 6,000
    failed = [line for line in lines if line.startswith("- **FAIL**")]
    assert len(failed) == 1
    assert "Redis + PostgreSQL" in failed[0]
    assert "33%" in failed[0]


def test_a_missing_redis_postgres_row_leaves_its_line_out() -> None:
    rows = [_row("direct", 100_000, 0.01), _row("passthrough", 6000, 0.4),
            _row("outlay", 5400, 0.5)]
    lines = report.bar(rows)
    assert not any("Redis" in line for line in lines)
    assert all(line.startswith("- **PASS**") for line in lines)


def test_added_latency_over_the_bar_fails() -> None:
    rows = [_row("direct", 100_000, 0.01), _row("passthrough", 6000, 0.4),
            _row("outlay", 5400, 0.6)]  # 0.2 ms over the pass-through's p50
    failed = [line for line in report.bar(rows) if "FAIL" in line]
    assert len(failed) == 1
    assert "p50 latency at 1 connection" in failed[0]


def test_outlay_is_held_to_three_times_portkey_and_half_its_added_latency() -> None:
    base = [_row("direct", 100_000, 0.01), _row("passthrough", 6000, 0.4),
            _row("outlay", 5400, 0.5)]
    good = report.bar([*base, _row("portkey", 1500, 1.2)])
    portkey = [line for line in good if "Portkey" in line]
    assert len(portkey) == 2
    assert all(line.startswith("- **PASS**") for line in portkey), portkey
    bad = report.bar([*base, _row("portkey", 2000, 0.8)])  # 2.7 times, and 0.49 vs 0.79 ms added
    failed = [line for line in bad if "Portkey" in line and line.startswith("- **FAIL**")]
    assert len(failed) == 2, bad


def test_the_guards_on_row_is_held_to_the_embedded_bar() -> None:
    base = [_row("direct", 100_000, 0.01), _row("passthrough", 6000, 0.4),
            _row("outlay", 5400, 0.5)]
    good = report.bar([*base, _row("outlay-guards", 5300, 0.5)])
    (line,) = [line for line in good if "outlay-guards" in line]
    assert line.startswith("- **PASS**")
    bad = report.bar([*base, _row("outlay-guards", 2000, 0.5)])  # 33% of the pass-through's
    (line,) = [line for line in bad if "outlay-guards" in line]
    assert line.startswith("- **FAIL**")
    assert "33%" in line
