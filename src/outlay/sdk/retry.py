"""Retrying a call that was rate limited, after the wait the gateway names; nothing else is
retried, a 402 least of all: a budget does not free up by asking again."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from outlay.sdk.answers import error_from
from outlay.sdk.errors import RateLimited

T = TypeVar("T")

DEFAULT_ATTEMPTS = 3
DEFAULT_MAX_WAIT_S = 60.0
_BACKOFF_BASE_S = 0.5


def retry(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = DEFAULT_ATTEMPTS,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    sleep: Callable[[float], object] = time.sleep,
    **kwargs: Any,
) -> T:
    """`fn(*args, **kwargs)`, tried up to `attempts` times in all while it is rate limited.

    A rate-limit refusal (an Outlay `RateLimited`, or any SDK's 429) is retried after its
    `Retry-After`; without one, after an exponential back-off with full jitter. A wait longer
    than `max_wait_s` is not taken: the error is raised at once, since an earlier retry would
    only be refused again. A `loop_detected` refusal (the same request made over and over,
    SPEC §2.10) is never retried: repeating it is the loop. Every other error, and the last
    one, is raised as it came.
    (`attempts`, `max_wait_s` and `sleep` are this helper's own; `fn` cannot take them.)
    """
    _check(attempts, max_wait_s)
    attempt = 1
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            wait = wait_before_retry(exc, attempt, attempts, max_wait_s)
            if wait is None:
                raise
        sleep(wait)
        attempt += 1


async def aretry(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    attempts: int = DEFAULT_ATTEMPTS,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    **kwargs: Any,
) -> T:
    """`await fn(*args, **kwargs)`, retried as `retry` does."""
    _check(attempts, max_wait_s)
    attempt = 1
    while True:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            wait = wait_before_retry(exc, attempt, attempts, max_wait_s)
            if wait is None:
                raise
        await sleep(wait)
        attempt += 1


def wait_before_retry(
    exc: BaseException, attempt: int, attempts: int, max_wait_s: float
) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None to raise `exc` now."""
    if attempt >= attempts:
        return None
    refusal = error_from(exc)
    if not isinstance(refusal, RateLimited) or refusal.code == "loop_detected":
        return None  # a loop's call repeated is the loop: never retried
    if refusal.retry_after is None:
        # no one said when: spread the retries of many agents instead of aligning them
        return random.uniform(0, min(max_wait_s, _BACKOFF_BASE_S * 2 ** (attempt - 1)))
    if refusal.retry_after > max_wait_s:
        return None
    return refusal.retry_after


def _check(attempts: int, max_wait_s: float) -> None:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if max_wait_s < 0:
        raise ValueError("max_wait_s must not be negative")
