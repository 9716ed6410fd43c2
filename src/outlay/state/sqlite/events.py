"""Events inside the embedded store's transactions: coalesced announcements into the webhook
outbox (budget warnings at settlement, refusals, approvals opened and decided)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from outlay.policy.decision import Event
from outlay.state.sqlite.outbox import enqueue


def announce(c: sqlite3.Connection, now: int, events: Iterable[Event]) -> int:
    """Put events in the outbox, each coalescing mark once; returns how many were new."""
    sent = 0
    for event in events:
        cur = c.execute("INSERT OR IGNORE INTO event_marks(mark, ts_ms) VALUES (?, ?)",
                        (event.coalesce, now))
        if cur.rowcount:
            enqueue(c, now, event.type, event.data)
            sent += 1
    return sent
