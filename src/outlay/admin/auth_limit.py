"""Failed admin authentications, counted per client address in fixed windows: past the
limit an address is refused (429) until its window ends, whatever token it sends. Memory
is bounded: past `max_addresses` the address seen longest ago is forgotten. A limit of 0
counts nothing."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

FAILURES = 100  # per address and window; a real token is never guessed, this stops floods
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000


class FailedAuthLimit:
    def __init__(self, clock: Callable[[], float], failures: int = FAILURES,
                 window_s: float = WINDOW_S, max_addresses: int = MAX_ADDRESSES) -> None:
        self.clock, self.failures, self.window_s = clock, failures, window_s
        self.max_addresses = max_addresses
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until `address` may try again; None when it may now."""
        entry = self._seen.get(address)
        if entry is None:
            return None
        start, count = entry
        left = start + self.window_s - self.clock()
        if left <= 0:
            del self._seen[address]
            return None
        return max(1, math.ceil(left)) if count >= self.failures else None

    def failed(self, address: str) -> None:
        if self.failures <= 0:
            return
        now = self.clock()
        start, count = self._seen.pop(address, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        self._seen[address] = (start, count + 1)  # most recent last
        while len(self._seen) > self.max_addresses:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
