"""Where the embedded store keeps rate windows: as rows of `counters` (schema version 10),
so that a scope's windows and its budget counters share a page and one statement."""

from __future__ import annotations

import sqlite3

from outlay.policy.windows import WindowState, decode

# a window's row: period is the window's name, period_start this (a budget period starts at
# 0 or after), state its buckets (windows.encode); spent and reserved stay 0
WINDOW_START = -1
# a budget counter's row sets `spent` and `reserved`, a rate window's `state`
UPSERT_COUNTERS = (
    "INSERT INTO counters(scope, period, period_start, spent, reserved, state) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(scope, period, period_start) "
    "DO UPDATE SET spent=excluded.spent, reserved=excluded.reserved, state=excluded.state")


def read_windows(c: sqlite3.Connection, scope: str) -> dict[str, WindowState]:
    """A scope's rate windows as stored."""
    return {name: decode(state) for name, state in c.execute(
        "SELECT period, state FROM counters WHERE scope=? AND period_start=?",
        (scope, WINDOW_START))}
