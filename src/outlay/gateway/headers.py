"""The rate-limit and budget headers of SPEC §4, computed from the limits in force."""

from __future__ import annotations

import functools

from outlay.policy.decision import Limits
from outlay.policy.money import ceil_div, micros_to_usd
from outlay.policy.windows import WINDOW_SECONDS


def duration(ms: int) -> str:
    """OpenAI's reset format: 1m30s, 6m0s, 850ms, 2s."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    seconds = ceil_div(ms, 1000)
    if seconds < 60:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s"


def limit_headers(limits: Limits, now_ms: int, request_id: str | None = None
                  ) -> dict[str, str]:
    """The headers, after `X-Outlay-Request-Id` when a request id is given. Every call of
    every key writes them: what only the policy sets (its limits, windows and caps) is
    formatted once per value, not once per call."""
    out: dict[str, str] = {} if request_id is None else {"X-Outlay-Request-Id": request_id}
    requests_limit = limits.requests_limit
    if requests_limit is not None:
        reset_ms = limits.requests_reset_ms or now_ms
        if reset_ms < now_ms:
            reset_ms = now_ms
        left_ms = reset_ms - now_ms
        remaining = str(limits.requests_remaining or 0)
        name = limits.requests_window
        limit_text, policy = _requests_policy(requests_limit, name)
        out["X-RateLimit-Limit-Requests"] = limit_text
        out["X-RateLimit-Remaining-Requests"] = remaining
        out["X-RateLimit-Reset"] = str(ceil_div(reset_ms, 1000))
        out["x-ratelimit-reset-requests"] = duration(left_ms)
        if policy is not None:
            out["RateLimit-Policy"] = policy
            out["RateLimit"] = f'"{name}";r={remaining};t={ceil_div(left_ms, 1000)}'
    tokens_limit = limits.tokens_limit
    if tokens_limit is not None:
        reset_ms = limits.tokens_reset_ms or now_ms
        if reset_ms < now_ms:
            reset_ms = now_ms
        out["x-ratelimit-limit-tokens"] = str(tokens_limit)
        out["x-ratelimit-remaining-tokens"] = str(limits.tokens_remaining or 0)
        out["x-ratelimit-reset-tokens"] = duration(reset_ms - now_ms)
    cap = limits.budget_cap
    if cap is not None:
        out["X-Budget-Limit-USD"] = _usd(cap)
        # the same figure under Outlay's names, and the scope whose budget it is
        out["X-Budget-Remaining-USD"] = out["X-Outlay-Budget-Remaining-Usd"] = \
            micros_to_usd(limits.budget_remaining or 0)
        if limits.budget_scope is not None:
            out["X-Outlay-Budget-Scope"] = limits.budget_scope
    return out


# bounded: a policy's limits and caps are few, and change only when an admin changes them
@functools.lru_cache(maxsize=512)
def _requests_policy(limit: int, window: str | None) -> tuple[str, str | None]:
    """The request limit as written, and its `RateLimit-Policy` (None without a window)."""
    if window is None:
        return str(limit), None
    return str(limit), f'"{window}";q={limit};w={WINDOW_SECONDS[window]}'


@functools.lru_cache(maxsize=512)
def _usd(cap: int) -> str:
    return micros_to_usd(cap)
