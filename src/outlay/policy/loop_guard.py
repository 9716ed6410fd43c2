"""The runaway-loop guard (policy `loop_guard`, `on_loop`): the same request of one key
admitted more than `max_repeats` times within a rolling `window_s` is refused (429
`loop_detected`), or its key revoked.

Pure: the guard's fields, the fingerprint of a request (key, method, path and a hash of
the body's canonical form), and the rolling count of a fingerprint's admissions. A count is
kept as buckets of a sixtieth of the window (rounded up to a whole ms): an admission counts
from the start of its bucket for `window_s`, so never longer than the window after it was
made, as the rate windows do (policy/windows.py).
"""

from __future__ import annotations

import hashlib
from typing import Literal
from urllib.parse import parse_qsl

import orjson

from outlay.policy.windows import WindowState
from outlay.values import value

OnLoop = Literal["refuse", "revoke"]
ON_LOOP: tuple[OnLoop, ...] = ("refuse", "revoke")
MAX_REPEATS = 100_000
MAX_WINDOW_S = 86_400
BUCKETS = 60
_FIELDS = ("max_repeats", "window_s")


class LoopGuardError(ValueError):
    """A `loop_guard` or `on_loop` that cannot be accepted; `field` names which."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@value
class LoopGuard:
    max_repeats: int
    window_s: int

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000

    @property
    def bucket_ms(self) -> int:
        return -(-self.window_ms // BUCKETS)

    def to_dict(self) -> dict[str, int]:
        return {"max_repeats": self.max_repeats, "window_s": self.window_s}


def parse_loop_guard(raw: object) -> LoopGuard | None:
    """`loop_guard: {max_repeats: N, window_s: S}`, both whole numbers of at least 1."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise LoopGuardError(
            f"loop_guard must be an object like {{max_repeats: 20, window_s: 60}}, got {raw!r}",
            "loop_guard")
    unknown = sorted(map(str, set(raw) - set(_FIELDS)))
    if unknown:
        field = f"loop_guard.{unknown[0]}"
        raise LoopGuardError(f"{field} is not a field of loop_guard (unknown: {unknown}; "
                             "known: max_repeats, window_s)", field)
    values = []
    for name, most in (("max_repeats", MAX_REPEATS), ("window_s", MAX_WINDOW_S)):
        field = f"loop_guard.{name}"
        if name not in raw:
            raise LoopGuardError(f"{field} is required", field)
        got = raw[name]
        if isinstance(got, bool) or not isinstance(got, int) or not 1 <= got <= most:
            raise LoopGuardError(
                f"{field} must be a whole number from 1 to {most}, got {got!r}", field)
        values.append(got)
    return LoopGuard(*values)


def parse_on_loop(raw: object) -> OnLoop:
    if raw is None or raw == "refuse":
        return "refuse"
    if raw == "revoke":
        return "revoke"
    raise LoopGuardError(f"on_loop must be 'refuse' or 'revoke', got {raw!r}", "on_loop")


def canonical_body(body: bytes) -> bytes:
    """The body in a form that two requests saying the same thing share: JSON with its keys
    sorted and no whitespace; a form-encoded body as its fields sorted by name (a name's
    repeated values kept in order); anything else as sent."""
    if not body:
        return b""
    try:
        return b"j" + orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        pass
    try:
        fields = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return b"r" + body
    return b"f" + orjson.dumps(sorted(fields, key=lambda pair: pair[0]))


def body_digest(body: bytes) -> bytes:
    """The SHA-256 of the body's canonical form: the costly half of a fingerprint."""
    return hashlib.sha256(canonical_body(body)).digest()


def fingerprint(key_id: str, method: str, path: str, body: bytes,
                digest: bytes | None = None) -> str:
    """What makes two requests the same request: key, route and canonical body (`digest`:
    its body_digest, when made already)."""
    out = hashlib.sha256(f"{key_id}\0{method.upper()}\0{path}\0".encode())
    out.update(body_digest(body) if digest is None else digest)
    return out.hexdigest()[:32]


@value
class RepeatCheck:
    allowed: bool
    repeats: int  # admissions within the window before this call
    state: WindowState  # the live buckets with this call counted (what to store if admitted)
    retry_after_ms: int  # 0 when allowed


def count_repeat(guard: LoopGuard, state: WindowState, now_ms: int) -> RepeatCheck:
    """Whether one more admission of a request fits `guard`, given the buckets of its
    earlier admissions (`state`: consecutive buckets of `guard.bucket_ms`, newest last)."""
    width, span = guard.bucket_ms, guard.window_ms
    bucket = now_ms // width
    first = (now_ms - span) // width + 1  # a bucket counts while its start + span > now
    counts_in = state.counts
    start = state.newest - len(counts_in) + 1
    if (bucket == state.newest and counts_in and start >= first and counts_in[0]
            and (used := sum(counts_in)) + 1 <= guard.max_repeats):
        # the usual repeat: within the newest bucket, every bucket still counting and the
        # oldest not empty, so the buckets stay as they are, this call added to the newest
        return RepeatCheck(True, used, state.grown(bucket, 1), 0)
    live = [(start + i, n) for i, n in enumerate(state.counts) if n and start + i >= first]
    used = sum(n for _, n in live)
    counts = dict(live)
    counts[bucket] = counts.get(bucket, 0) + 1
    after = from_buckets(counts)
    if used + 1 <= guard.max_repeats:
        return RepeatCheck(True, used, after, 0)
    freed, retry_at = 0, now_ms + span
    for at, n in live:
        freed += n
        if used - freed + 1 <= guard.max_repeats:
            retry_at = at * width + span
            break
    return RepeatCheck(False, used, after, max(1, retry_at - now_ms))


def from_buckets(counts: dict[int, int]) -> WindowState:
    """A fingerprint's buckets kept as bucket -> count (a Redis hash) as a WindowState."""
    if not counts:
        return WindowState()
    low, high = min(counts), max(counts)
    return WindowState(high, tuple(counts.get(b, 0) for b in range(low, high + 1)))
