"""The rows of the embedded store's `counters`: budget counters and, since schema version
10, rate windows, so that a scope's windows and its budget counters share a page and are
written by one statement."""

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
# a row already in the file: one seek, where the upsert tries an insert first
UPDATE_COUNTER = ("UPDATE counters SET spent=?, reserved=?, state=? "
                  "WHERE scope=? AND period=? AND period_start=?")


def read_windows(c: sqlite3.Connection, scope: str) -> dict[str, WindowState]:
    """A scope's rate windows as stored."""
    return {name: decode(state) for name, state in c.execute(
        "SELECT period, state FROM counters WHERE scope=? AND period_start=?",
        (scope, WINDOW_START))}
