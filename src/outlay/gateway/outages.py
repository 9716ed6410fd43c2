"""Failures that repeat on every call while they last, logged without flooding the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("outlay.gateway")


class Throttled:
    """Logs the first line of a burst, then at most one every `every_s` seconds with how
    many it left out: an outage shows in the log, with its cause, and does not flood it."""

    def __init__(self, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._next = float("-inf")
        self._left_out = 0

    def warn(self, message: str) -> None:
        now = self.clock()
        if now < self._next:
            self._left_out += 1
            return
        more = f" (and {self._left_out} more since the last line)" if self._left_out else ""
        log.warning("%s%s", message, more)
        self._next, self._left_out = now + self.every_s, 0
