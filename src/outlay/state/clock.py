"""The wall clock every store keeps its times in: integer milliseconds since the epoch."""

from __future__ import annotations

import time


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
