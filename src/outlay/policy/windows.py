"""Rolling rate windows (rpm, rph, rpd, tpm) as bucketed counters.

A window of W seconds is kept as the counts of its last BUCKETS buckets of W/BUCKETS each:
a request counts from the start of its bucket for W, so it stops counting exactly W after
that start, never later than W after it was made. A request is admitted only if the sum of
those counts, plus its own weight, stays within the limit. So the wait a refusal names is
never longer than the window (Retry-After 60 at most for a minute window), the slot is free
when it says, no request is refused that a log of exact timestamps would admit, and no span
of W less one bucket (59 s for rpm) ever holds more than the limit.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import field

from outlay.values import value

BUCKETS = 60
WINDOW_SECONDS = {"rpm": 60, "rph": 3600, "rpd": 86400, "tpm": 60}
REQUEST_WINDOWS = ("rpm", "rph", "rpd")
LIMIT_CODES = {
    "rpm": "rate_limit_exceeded",
    "rph": "hourly_rate_limit_exceeded",
    "rpd": "daily_rate_limit_exceeded",
    "tpm": "token_rate_limit_exceeded",
}


_BUCKET_MS = {name: seconds * 1000 // BUCKETS for name, seconds in WINDOW_SECONDS.items()}


def bucket_ms(name: str) -> int:
    return _BUCKET_MS[name]


def bucket_of(name: str, now_ms: int) -> int:
    return now_ms // bucket_ms(name)


@value
class WindowState:
    """Counts of consecutive buckets, oldest first, the last one being bucket `newest`."""

    newest: int = 0
    counts: tuple[int, ...] = ()
    # the sum of the counts when known: kept by grown and adjusted, so that a window kept
    # between calls is not summed again on each (not part of the value)
    total: int | None = field(default=None, compare=False, repr=False)

    @property
    def used(self) -> int:
        return sum(self.counts) if self.total is None else self.total

    def rolled(self, bucket: int) -> WindowState:
        """The same window seen from `bucket`: buckets that left the window are dropped (a
        bucket leaves a window's span after it started; a window kept by an earlier
        version, with one bucket more, loses it here)."""
        if bucket < self.newest or (bucket == self.newest and len(self.counts) <= BUCKETS):
            return self
        if not self.counts or bucket - self.newest >= BUCKETS:
            return WindowState(bucket, ())
        counts = self.counts + (0,) * (bucket - self.newest)
        return WindowState(bucket, counts[-BUCKETS:])

    def added(self, bucket: int, weight: int) -> WindowState:
        return self.rolled(bucket).grown(bucket, weight)

    def grown(self, bucket: int, weight: int, used: int | None = None) -> WindowState:
        """This window, already seen from `bucket` (rolled), with `weight` added to its
        newest bucket. `used`: the sum of its counts, when the caller has it."""
        counts = self.counts
        if not counts:
            return WindowState(bucket, (weight,), weight)
        total = self.total if used is None else used
        # concatenated: faster than unpacking 59 counts into a new tuple
        return WindowState(self.newest, counts[:-1] + (counts[-1] + weight,),  # noqa: RUF005
                           None if total is None else total + weight)

    def adjusted(self, bucket: int, delta: int) -> WindowState:
        """Correct a bucket's count after the fact (settling tokens); a gone bucket is ignored."""
        offset = len(self.counts) - 1 - (self.newest - bucket)
        if offset < 0 or offset >= len(self.counts):
            return self
        counts = list(self.counts)
        was = counts[offset]
        now = counts[offset] = max(0, was + delta)
        total = self.total
        return WindowState(self.newest, tuple(counts), None if total is None else total - was + now)


@value
class WindowCheck:
    allowed: bool
    state: WindowState  # rolled, with the weight added when allowed
    limit: int
    used: int  # after this request when allowed
    retry_after_ms: int  # 0 when allowed
    reset_ms: int  # when the oldest counted bucket leaves the window (now when empty)


def fits(name: str, state: WindowState, limit: int, weight: int, now_ms: int
         ) -> tuple[WindowState, int, int] | None:
    """What `check` says of a request it allows, without its WindowCheck (the usual answer,
    on every call): the window after, used after, and reset; None when it refuses."""
    width = _BUCKET_MS[name]
    bucket = now_ms // width
    counts = state.counts
    # seen from the bucket it was written in (the usual call): no rolling to do
    rolled = state if bucket == state.newest and len(counts) <= BUCKETS else state.rolled(bucket)
    counts = rolled.counts
    total = rolled.total
    before = sum(counts) if total is None else total
    if before + weight > limit:
        return None
    after = rolled.grown(bucket, weight, before)
    return after, before + weight, _reset(after, width, now_ms)


def check(name: str, state: WindowState, limit: int, weight: int, now_ms: int) -> WindowCheck:
    allowed = fits(name, state, limit, weight, now_ms)
    if allowed is not None:
        after, used_after, reset_ms = allowed
        return WindowCheck(True, after, limit, used_after, 0, reset_ms)
    width = _BUCKET_MS[name]
    window = width * BUCKETS
    rolled = state.rolled(now_ms // width)
    used = rolled.used
    first = rolled.newest - len(rolled.counts) + 1
    freed = 0
    retry_at = now_ms + window  # weight alone above the limit: no wait can help; say one window
    for index, count in enumerate(rolled.counts):
        freed += count
        if count and used - freed + weight <= limit:
            # bucket `first+index` stops counting a window's span after it started
            retry_at = (first + index) * width + window
            break
    return WindowCheck(False, rolled, limit, used, max(1, retry_at - now_ms),
                       _reset(rolled, width, now_ms))


def _reset(state: WindowState, width: int, now_ms: int) -> int:
    """When the oldest bucket that counts leaves the window (now when none counts)."""
    counts = state.counts
    if counts and counts[0]:  # the usual case under steady traffic: no search
        oldest = 0
    else:
        # the first count that is not 0, found in C: nothing before it is not 0, so its
        # value's first place is its own
        first = next(filter(None, counts), 0)
        if not first:
            return now_ms
        oldest = counts.index(first)
    return (state.newest - len(counts) + 1 + oldest + BUCKETS) * width


# the widths a window's counts are packed in, narrowest first: the first that holds every
# count is used (a store rewrites a window on every call, and a narrower row keeps more of
# them in a page); each as a one-byte code the counts follow
_WIDTHS = ((b"H", "<cq{}H"), (b"I", "<cq{}I"), (b"q", "<cq{}q"))
# the layouts of the usual lengths (a window holds at most BUCKETS counts, one more when
# kept by an earlier version), formatted once rather than on every call
_LAYOUTS = tuple(tuple((code, layout.format(n)) for code, layout in _WIDTHS)
                 for n in range(BUCKETS + 2))


def encode(state: WindowState) -> bytes:
    """The counts' width, the newest bucket and the counts as packed integers: packing
    beats formatting and parsing 60 numbers as text. The length is odd (1 + 8 + an even
    number of bytes), so it is never taken for the 64-bit form of earlier versions (a
    multiple of 8)."""
    counts = state.counts
    n = len(counts)
    layouts = _LAYOUTS[n] if n < len(_LAYOUTS) else tuple(
        (code, layout.format(n)) for code, layout in _WIDTHS)
    for code, layout in layouts:
        try:  # struct caches the format of each length; a count it cannot hold raises
            return struct.pack(layout, code, state.newest, *counts)
        except struct.error:
            continue
    # past 64 bits: the array's OverflowError, as ever
    return array("q", (state.newest, *counts)).tobytes()


def decode(stored: bytes | str | None) -> WindowState:
    if not stored:
        return WindowState()
    if isinstance(stored, str):  # the text form of earlier versions: "newest:c1,c2,…"
        newest, _, counts = stored.partition(":")
        return WindowState(int(newest), tuple(map(int, counts.split(","))) if counts else ())
    if len(stored) % 8:
        code = chr(stored[0])
        n = (len(stored) - 9) // struct.calcsize(code)
        values = struct.unpack(f"<q{n}{code}", stored[1:])
        return WindowState(values[0], values[1:])
    # the native 64-bit integers of earlier versions, the newest bucket first
    packed = array("q")
    packed.frombytes(stored)
    return WindowState(packed[0], tuple(packed[1:]))
