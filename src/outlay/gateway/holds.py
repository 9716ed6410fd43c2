"""Calls waiting for room that other calls' reservations hold (SPEC §2.3, `hold_wait_ms`).

A call that fits a hard budget's settled spend, but not beside the calls in flight, is held
back by the store (BudgetHeld) rather than refused; it waits here, never holding the store's
write lock or any reservation, and asks again: at once when a call of this worker settles
(its settlement is applied before the asking decision, which the store's batches order
after it), else after a short poll for other workers' and replicas' settlements, until its
wait is over. Then it is decided once more without waiting: admitted, or refused as any call.
At most `limit` calls of a worker wait at once; others are decided at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

FIRST_POLL_S = 0.005  # the first look for other workers' settlements; doubled each time
LAST_POLL_S = 0.05
MAX_WAITING = 512  # calls of one worker waiting at once


@dataclass
class Holds:
    limit: int = MAX_WAITING
    waiting: int = 0
    _settled: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> bool:
        """Take a place to wait; False when `limit` calls already wait."""
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1

    def settled(self) -> None:
        """A call of this worker settled: every waiting call asks again."""
        if self.waiting:
            self._settled.set()
            self._settled = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until this worker's next settlement, or `seconds`."""
        settled = self._settled
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), seconds)


@dataclass
class Wait:
    """One call's wait: since when, until when, and its next poll."""

    until: float  # time.monotonic()
    since: float = field(default_factory=time.monotonic)
    poll: float = FIRST_POLL_S

    @classmethod
    def of(cls, wait_ms: int) -> Wait:
        now = time.monotonic()
        return cls(now + wait_ms / 1000, now)

    @property
    def waited_ms(self) -> int:
        return round((time.monotonic() - self.since) * 1000)

    def next_poll(self) -> float:
        """How long to wait now (0: the wait is over)."""
        left = self.until - time.monotonic()
        if left <= 0:
            return 0.0
        poll, self.poll = self.poll, min(self.poll * 2, LAST_POLL_S)
        return min(poll, left)
