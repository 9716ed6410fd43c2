"""When to try a failed delivery again: exponential backoff with jitter, a receiver's
Retry-After honoured, and a horizon after which Outlay gives up. Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

DAY_S = 86_400.0


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (n failures so far) is drawn uniformly from
    [base, min(cap, base·2^(n-1))]: full jitter above a floor, so retries of many
    deliveries spread out and never come back at once. Outlay keeps trying until
    `horizon_s` after the event was created (SPEC §5: at least 24 h)."""

    base_s: float = 5.0
    cap_s: float = 3600.0
    horizon_s: float = 26 * 3600.0
    max_retry_after_s: float = DAY_S  # a receiver asking for longer gets this

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        if self.horizon_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff horizon and Retry-After bound must not be negative")

    def delay_s(self, failures: int, rng: random.Random) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(max(failures - 1, 0), 64))
        return rng.uniform(self.base_s, ceiling)

    def next_attempt_ms(
        self, failures: int, now_ms: int, created_ms: int, rng: random.Random,
        retry_after_s: float | None = None,
    ) -> int | None:
        """When to try again after `failures` failed attempts, or None: give up."""
        deadline = created_ms + round(self.horizon_s * 1000)
        if now_ms >= deadline:
            return None
        delay_ms = round(self.delay_s(failures, rng) * 1000)
        if retry_after_s is not None:
            asked_ms = round(min(max(retry_after_s, 0.0), self.max_retry_after_s) * 1000)
            if asked_ms > delay_ms:
                # honoured even past the horizon: one last attempt when the receiver says
                return now_ms + asked_ms
        # the last retry lands on the horizon itself, so the full window is used
        return min(now_ms + delay_ms, deadline)
