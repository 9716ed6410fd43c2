"""A per-endpoint circuit breaker as pure logic over an injectable clock.

closed --N consecutive failures--> open --cool-down--> half-open --success--> closed
                                     ^                     |
                                     +------failure--------+
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    """Where an endpoint stands: taking calls, refusing them, or trying one probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one endpoint and decides whether to try it."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The state as of now; an open breaker whose cool-down has passed reads half-open."""
        if self._state is BreakerState.OPEN and self._cooled_down(self._opened_at):
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """Whether to send a call now. In half-open, only one probe at a time is let through."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if not self._cooled_down(self._opened_at):
                return False
            self._move(BreakerState.HALF_OPEN)
            self._probe_started_at = self._clock()
            return True
        # A probe that never reported (its caller was cancelled) must not wedge the breaker
        # half-open for ever, so a probe older than one cool-down is replaced.
        if self._cooled_down(self._probe_started_at):
            self._probe_started_at = self._clock()
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        if self._state is not BreakerState.CLOSED:  # closed already on nearly every call
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def _cooled_down(self, since: float) -> bool:
        return self._clock() - since >= self._cooldown_s

    def _move(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        if old is not new and self._on_change is not None:
            self._on_change(old, new)
