"""Spend over time on a million-row ledger: how long the store takes to answer a series
(GET /admin/v1/reports/series) from the hourly rollups, beside the same sums scanned from
the ledger, on an embedded store seeded by bench/seed.py (1,000,000 rows over 60 days,
100,000 keys, 1,000 agents, by default).

    .venv/bin/python bench/series.py                      # seed a scratch file, then measure
    .venv/bin/python bench/series.py --state /tmp/s.db    # reuse (or make) that file
    .venv/bin/python bench/series.py --rows 100000 --repeat 5

It prints, per query, the median of --repeat answers in milliseconds. A wall-clock figure:
run it on a quiet machine, and compare runs of the same machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from seed import seed  # noqa: E402 (after the path is set)

from outlay.policy.series import INTERVAL_MS, Interval, SeriesQuery, series_answer  # noqa: E402
from outlay.state import ledger_sql, rollups_sql  # noqa: E402
from outlay.state.sqlite.store import SqliteStore  # noqa: E402

DAY_MS = INTERVAL_MS["day"]


def queries(now: int, agent: str, key: str) -> list[tuple[str, SeriesQuery]]:
    def last(days: int, interval: Interval, scope: str = "global",
             split: str | None = None) -> SeriesQuery:
        return SeriesQuery(scope, interval, now - days * DAY_MS, now + 1, split)
    return [
        ("global, by hour, 30 days (720 points)", last(30, "hour")),
        ("global, by day, 60 days", last(60, "day")),
        ("global, by hour, 7 days, split by agent (1,000 series)",
         last(7, "hour", split="agent")),
        ("vendor:openai, by day, 60 days, split by model", last(60, "day", "vendor:openai",
                                                                "model")),
        (f"agent:{agent}, by hour, 30 days", last(30, "hour", f"agent:{agent}")),
        (f"key:{key}, by day, 60 days (from the ledger)", last(60, "day", f"key:{key}")),
    ]


def ledger_scan(path: str, query: SeriesQuery) -> None:
    """The same sums read from every ledger row of the range: what a series costs without
    rollups."""
    conn = sqlite3.connect(path)
    try:
        where, args = ledger_sql.scope_filter(query.scope)
        conn.execute(*rollups_sql.ledger_query(query, "ledger", where, args)).fetchall()
    finally:
        conn.close()


async def measure(path: str, repeat: int) -> None:
    conn = sqlite3.connect(path)
    now = conn.execute("SELECT max(ts_ms) FROM ledger").fetchone()[0]
    rows = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
    rollups = conn.execute("SELECT count(*) FROM rollups").fetchone()[0]
    agent, key = conn.execute("SELECT agent, key_id FROM ledger LIMIT 1").fetchone()
    conn.close()
    print(f"ledger: {rows:,} rows; rollups: {rollups:,} rows")
    store = SqliteStore(path)
    await store.open()
    try:
        for name, query in queries(now, agent, key):
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = series_answer(query, await store.series(query))
                times.append((time.perf_counter() - started) * 1000)
            requests = sum(p["requests"] for p in answer["points"])
            line = (f"{name}: {statistics.median(times):.1f} ms "
                    f"({len(answer['points'])} points, {requests:,} requests)")
            if rollups_sql.from_rollups(query):
                started = time.perf_counter()
                ledger_scan(path, query)
                scanned = (time.perf_counter() - started) * 1000
                line += f"; the ledger scanned instead: {scanned:.0f} ms"
            print(line)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", help="an embedded store file (seeded when missing)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.state or os.path.join(scratch, "series.db")
        if not Path(path).exists():
            seeded = seed(path, keys=args.keys, ledger_rows=args.rows)
            print(f"seeded {seeded.ledger_rows:,} rows and {seeded.keys:,} keys in "
                  f"{seeded.seconds:.0f} s")
        asyncio.run(measure(path, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
