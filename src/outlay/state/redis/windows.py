"""A rate window as Redis keeps it (`lua/window.lua`): a hash of its newest bucket (`b`), that
bucket's count (`c`), the sum of the counts of the 59 buckets before it (`s`) and those
counts, newest first, separated by spaces (`t`). The reservation script returns a window as
it saw it in one string of the same figures, `b s c t`; the rebuild writes windows so, and
the usage report reads them (or the hash of bucket -> count an earlier version kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat

import orjson

from outlay.policy.windows import BUCKETS, WindowState


def integers(text: str | bytes) -> list[int]:
    """Integers separated by spaces, read as a JSON array: several times faster than an
    int() each."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        numbers = orjson.loads(f"[{text.replace(' ', ',')}]")
    except orjson.JSONDecodeError:
        numbers = None
    # a number past 64 bits would be read as a float: those are read exactly, one by one
    if numbers is None or not isinstance(sum(numbers), int):
        return list(map(int, text.split()))
    return numbers  # type: ignore[no-any-return]


def seen_window(text: str | bytes) -> WindowState:
    """A window as the reservation script saw it (`b s c t`) as `decide` reads it: its
    counts oldest first, and their sum."""
    numbers = integers(text)
    # numbers[:1:-1]: the counts (from the third number on) from the last, so oldest first
    return WindowState(numbers[0], tuple(numbers[:1:-1]), numbers[1] + numbers[2])


def window_fields(newest: int, counts: Mapping[int, int]) -> dict[str, str]:
    """The hash of a window whose newest bucket is `newest`, from its counts by bucket
    (those older than the window's 60 buckets, or newer than `newest`, left out)."""
    older = [counts.get(b, 0) for b in range(newest - 1, newest - BUCKETS, -1)]
    return {"b": str(newest), "c": str(counts.get(newest, 0)), "s": str(sum(older)),
            "t": " ".join(map(str, older))}


def stored_window(fields: Mapping[str, str], width_ms: int, now_ms: int) -> WindowState:
    """What a window's hash holds at `now_ms` (or the hash of bucket -> count an earlier
    version kept)."""
    if "b" in fields:
        newest = int(fields["b"])
        counts = dict(zip(range(newest, newest - BUCKETS, -1),
                          (int(fields["c"]), *integers(fields["t"])), strict=True))
    else:
        counts = {int(b): int(n) for b, n in fields.items()}
    bucket = now_ms // width_ms
    # counts.get(b, 0) for every bucket, oldest first, without a Python step per bucket
    return WindowState(bucket, tuple(map(counts.get, range(bucket - BUCKETS + 1, bucket + 1),
                                         repeat(0))))
