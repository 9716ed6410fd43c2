"""limit_headers against the plain formatting it replaced: the same headers, byte for byte
and in the same order, for any limits and clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outlay.gateway.headers import duration, limit_headers
from outlay.policy.decision import Limits
from outlay.policy.money import ceil_div, micros_to_usd
from outlay.policy.windows import WINDOW_SECONDS


def _duration(ms: int) -> str:
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


def _reference(limits: Limits, now_ms: int) -> dict[str, str]:
    out: dict[str, str] = {}
    if limits.requests_limit is not None:
        reset_ms = max(now_ms, limits.requests_reset_ms or now_ms)
        remaining = limits.requests_remaining or 0
        out["X-RateLimit-Limit-Requests"] = str(limits.requests_limit)
        out["X-RateLimit-Remaining-Requests"] = str(remaining)
        out["X-RateLimit-Reset"] = str(ceil_div(reset_ms, 1000))
        out["x-ratelimit-reset-requests"] = _duration(reset_ms - now_ms)
        name = limits.requests_window
        if name is not None:
            seconds = WINDOW_SECONDS[name]
            out["RateLimit-Policy"] = f'"{name}";q={limits.requests_limit};w={seconds}'
            out["RateLimit"] = f'"{name}";r={remaining};t={ceil_div(reset_ms - now_ms, 1000)}'
    if limits.tokens_limit is not None:
        reset_ms = max(now_ms, limits.tokens_reset_ms or now_ms)
        out["x-ratelimit-limit-tokens"] = str(limits.tokens_limit)
        out["x-ratelimit-remaining-tokens"] = str(limits.tokens_remaining or 0)
        out["x-ratelimit-reset-tokens"] = _duration(reset_ms - now_ms)
    if limits.budget_cap is not None:
        out["X-Budget-Limit-USD"] = micros_to_usd(limits.budget_cap)
        out["X-Budget-Remaining-USD"] = micros_to_usd(limits.budget_remaining or 0)
        out["X-Outlay-Budget-Remaining-Usd"] = out["X-Budget-Remaining-USD"]
        if limits.budget_scope is not None:
            out["X-Outlay-Budget-Scope"] = limits.budget_scope
    return out


_counts = st.one_of(st.none(), st.integers(0, 10**15))
_limits = st.builds(
    Limits,
    requests_limit=_counts, requests_remaining=_counts,
    requests_reset_ms=st.one_of(st.none(), st.integers(0, 2 * 10**12)),
    requests_window=st.one_of(st.none(), st.sampled_from(["rpm", "rph", "rpd"])),
    tokens_limit=_counts, tokens_remaining=_counts,
    tokens_reset_ms=st.one_of(st.none(), st.integers(0, 2 * 10**12)),
    budget_cap=st.one_of(st.none(), st.integers(0, 10**18)),
    budget_remaining=st.one_of(st.none(), st.integers(-(10**15), 10**18)),
    budget_scope=st.one_of(st.none(), st.sampled_from(["key:key_1", "agent:bot"])),
)


@given(_limits, st.integers(10**12 - 10**8, 10**12 + 10**8))
def test_limit_headers_are_those_of_the_plain_formatting(limits: Limits, now_ms: int) -> None:
    assert list(limit_headers(limits, now_ms).items()) == \
        list(_reference(limits, now_ms).items())


@given(_limits, st.integers(10**12 - 10**8, 10**12 + 10**8))
def test_the_request_id_comes_first(limits: Limits, now_ms: int) -> None:
    expected = {"X-Outlay-Request-Id": "req_1", **_reference(limits, now_ms)}
    assert list(limit_headers(limits, now_ms, "req_1").items()) == list(expected.items())


@given(st.integers(-(10**6), 10**9))
def test_duration_is_the_plain_formatting(ms: int) -> None:
    assert duration(ms) == _duration(ms)
