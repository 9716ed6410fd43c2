"""The rate-limit and budget headers of SPEC §4, computed from the limits in force."""

from __future__ import annotations

from outlay.policy.decision import Limits
from outlay.policy.money import ceil_div, micros_to_usd
from outlay.policy.windows import WINDOW_SECONDS


def duration(ms: int) -> str:
    """OpenAI's reset format: 1m30s, 6m0s, 850ms, 2s."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    seconds = ceil_div(ms, 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def limit_headers(limits: Limits, now_ms: int) -> dict[str, str]:
    out: dict[str, str] = {}
    if limits.requests_limit is not None:
        reset_ms = max(now_ms, limits.requests_reset_ms or now_ms)
        remaining = limits.requests_remaining or 0
        out["X-RateLimit-Limit-Requests"] = str(limits.requests_limit)
        out["X-RateLimit-Remaining-Requests"] = str(remaining)
        out["X-RateLimit-Reset"] = str(ceil_div(reset_ms, 1000))
        out["x-ratelimit-reset-requests"] = duration(reset_ms - now_ms)
        name = limits.requests_window
        if name is not None:
            seconds = WINDOW_SECONDS[name]
            out["RateLimit-Policy"] = f'"{name}";q={limits.requests_limit};w={seconds}'
            out["RateLimit"] = f'"{name}";r={remaining};t={ceil_div(reset_ms - now_ms, 1000)}'
    if limits.tokens_limit is not None:
        reset_ms = max(now_ms, limits.tokens_reset_ms or now_ms)
        out["x-ratelimit-limit-tokens"] = str(limits.tokens_limit)
        out["x-ratelimit-remaining-tokens"] = str(limits.tokens_remaining or 0)
        out["x-ratelimit-reset-tokens"] = duration(reset_ms - now_ms)
    if limits.budget_cap is not None:
        out["X-Budget-Limit-USD"] = micros_to_usd(limits.budget_cap)
        out["X-Budget-Remaining-USD"] = micros_to_usd(limits.budget_remaining or 0)
        # the same figure under Outlay's names, and the scope whose budget it is
        out["X-Outlay-Budget-Remaining-Usd"] = out["X-Budget-Remaining-USD"]
        if limits.budget_scope is not None:
            out["X-Outlay-Budget-Scope"] = limits.budget_scope
    return out
