"""A worker's stop under one deadline.

From SIGTERM to exit, the stop is bounded as a whole (STOP_S), not wait by wait: the
answers in progress get at most ANSWERS_S of it, and leave at least CLOSING_S to the closes
after them (background work, the upstream pools, the state store). A step that outlasts
what is left is cancelled and the stop goes on: what it left undone is what a worker killed
leaves, which the reaper and the settlement retries are made for. Each step's time goes to
the log as the worker exits, so a slow stop says where its time went.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("outlay")

STOP_S = 8.0  # SIGTERM to exit, every step: inside the 10 s `docker stop` waits by default
ANSWERS_S = 5.0  # of which the answers in progress get at most this
CLOSING_S = 3.0  # and leave at least this to the closes after them
CUT_S = 0.5  # a step cancelled at its deadline is waited for this much longer at most
# the state store's close gets at least this, even past the deadline: it writes the queued
# settlements first, and a close cancelled before it began would leave them to the reaper,
# which charges a call in full
STORE_CLOSE_S = 1.0
NOTED_S = 0.01  # a step shorter than this is left out of the log's line


class Stop:
    """The deadline of one worker's stop, and the time each of its steps took."""

    def __init__(self, total_s: float = STOP_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total_s, self._clock = total_s, clock
        self._began: float | None = None
        self.steps: list[tuple[str, float, bool]] = []  # name, seconds, cut short

    def begin(self) -> None:
        """The stop starts now (a second call changes nothing)."""
        if self._began is None:
            self._began = self._clock()

    def left(self) -> float:
        """Seconds left to the whole stop (all of it before it began)."""
        if self._began is None:
            return self.total_s
        return max(0.0, self._began + self.total_s - self._clock())

    def grace(self) -> float:
        """What the answers in progress may have."""
        return max(0.0, min(ANSWERS_S, self.left() - CLOSING_S))

    def took(self, name: str, seconds: float, *, cut: bool = False) -> None:
        self.steps.append((name, seconds, cut))

    async def step(self, name: str, work: Awaitable[object], *, at_least_s: float = 0.0
                   ) -> bool:
        """Await `work` within the time left (or `at_least_s`, if more); past it, cancel it
        and go on. True when it finished (or failed) in time; a failure is logged, not
        raised."""
        start = self._clock()
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=max(self.left(), at_least_s))
        cut = not done
        if cut:
            task.cancel()
            await asyncio.wait({task}, timeout=CUT_S)
            log.error("stopping: %s did not finish within the stop's %.0f s; cut short",
                      name, self.total_s)
        elif not task.cancelled() and (exc := task.exception()) is not None:
            log.error("stopping: %s failed: %r", name, exc)
        self.took(name, self._clock() - start, cut=cut)
        return not cut

    def report(self) -> str:
        """One line: the whole stop's time, and each step's that took any."""
        total = 0.0 if self._began is None else self._clock() - self._began
        parts = [f"{name} {seconds:.2f} s{' (cut short)' if cut else ''}"
                 for name, seconds, cut in self.steps if seconds >= NOTED_S or cut]
        return f"worker stopped in {total:.2f} s" + (f": {', '.join(parts)}" if parts else "")
