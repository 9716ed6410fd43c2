"""Idempotency keys of vendor calls, kept per vendor account (the `replays` table): a retry
under a key an admitted call already used on the same account, whichever Outlay key sends
it, repeats that call and is charged nothing more."""

from __future__ import annotations

import sqlite3

from outlay.state.base import Ticket


def first_call(c: sqlite3.Connection, ticket: Ticket) -> str | None:
    """The call a retry repeats: one already admitted under the same idempotency key on the
    same vendor account. Only an admitted call registers its key (`register`), so the retry
    of a refused call is decided afresh, money included."""
    if ticket.idempotency_key is None:
        return None
    first = c.execute(
        "SELECT request_id FROM replays WHERE vendor=? AND account=? AND idem=?",
        (ticket.call.vendor, ticket.idempotency_account, ticket.idempotency_key)).fetchone()
    return None if first is None else str(first[0])


def register(c: sqlite3.Connection, ticket: Ticket, key_id: str, now: int) -> None:
    """An admitted call's idempotency key, for its retries to find."""
    if ticket.idempotency_key is not None:
        c.execute("INSERT INTO replays(vendor, account, idem, request_id, key_id, created_ms) "
                  "VALUES (?, ?, ?, ?, ?, ?)",
                  (ticket.call.vendor, ticket.idempotency_account, ticket.idempotency_key,
                   ticket.request_id, key_id, now))


def forget(c: sqlite3.Connection, request_id: str) -> None:
    """A call voided: a refused first attempt must not turn its retries into free replays."""
    c.execute("DELETE FROM replays WHERE request_id=?", (request_id,))
