"""One timer per connection for its time limits (a head, a body, an idle spell), moved
lazily: a request costs no timer of its own on a busy connection."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

EARLY_S = 0.001  # a timer this close to its deadline counts as on time


class Deadline:
    """Calls `expired` once the time set by `start` or `start_at` passes, unless `stop` or
    another start came first.

    A later deadline only records the time: the timer, when it fires early, sets itself
    again. An earlier one replaces the timer. So a connection holds at most one timer, and
    on a connection that is kept busy a request creates none.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self.loop, self.expired = loop, expired
        self.at = math.inf  # when `expired` is due (loop time); inf: nothing is
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def start(self, seconds: float) -> None:
        self.start_at(self.loop.time() + seconds)

    def start_at(self, when: float) -> None:
        self.at = when
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self.loop.call_at(when, self._fire), when

    def stop(self) -> None:
        """Nothing is due; the timer, when it fires, finds so."""
        self.at = math.inf

    def cancel(self) -> None:
        """For good: the connection is gone."""
        self.stop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        if self.at == math.inf:
            return
        if self.at - self.loop.time() > EARLY_S:  # moved on since this timer was set
            self._timer, self._timer_at = self.loop.call_at(self.at, self._fire), self.at
            return
        self.at = math.inf
        self.expired()
