"""Rolling windows: never stricter than exact, never over the limit in a window less one
bucket, and a retry_after within the window after which the slot is free."""

from __future__ import annotations

import random
import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outlay.policy.windows import (
    BUCKETS,
    LIMIT_CODES,
    WINDOW_SECONDS,
    WindowState,
    bucket_ms,
    bucket_of,
    check,
    decode,
    encode,
    fits,
)

T0 = 1_710_417_600_000  # 2024-03-14T12:00:00Z, a bucket boundary for every window


def burst(name: str, limit: int, count: int, now: int, state: WindowState | None = None,
          weight: int = 1) -> tuple[WindowState, list[bool]]:
    state = state or WindowState()
    admitted = []
    for _ in range(count):
        result = check(name, state, limit, weight, now)
        admitted.append(result.allowed)
        state = result.state
    return state, admitted


def test_bucket_widths() -> None:
    assert BUCKETS == 60
    assert WINDOW_SECONDS == {"rpm": 60, "rph": 3600, "rpd": 86400, "tpm": 60}
    assert [bucket_ms(n) for n in ("rpm", "rph", "rpd", "tpm")] == [1000, 60_000, 1_440_000, 1000]
    assert bucket_of("rpm", T0 + 999) == bucket_of("rpm", T0) == T0 // 1000
    assert bucket_of("rpm", T0 + 1000) == T0 // 1000 + 1


def test_limit_codes() -> None:
    assert LIMIT_CODES == {
        "rpm": "rate_limit_exceeded",
        "rph": "hourly_rate_limit_exceeded",
        "rpd": "daily_rate_limit_exceeded",
        "tpm": "token_rate_limit_exceeded",
    }


@pytest.mark.parametrize("name", ["rpm", "rph", "rpd"])
@pytest.mark.parametrize("offset", [0, 1, 499, 999])
def test_a_burst_admits_exactly_the_limit(name: str, offset: int) -> None:
    now = T0 + offset
    state, admitted = burst(name, 30, 31, now)
    assert admitted == [True] * 30 + [False]
    refused = check(name, state, 30, 1, now)
    assert not refused.allowed
    assert refused.used == 30
    assert refused.limit == 30
    window = WINDOW_SECONDS[name] * 1000
    # the burst's bucket leaves the window one window after the bucket's start: never
    # longer than the window (Retry-After 60 at most for rpm)
    assert refused.retry_after_ms == window - offset
    assert refused.retry_after_ms <= window
    assert refused.state == state  # a refusal changes nothing
    assert check(name, state, 30, 1, now + refused.retry_after_ms - 1).allowed is False
    assert check(name, state, 30, 1, now + refused.retry_after_ms).allowed is True


def test_used_and_remaining_track_the_burst() -> None:
    state = WindowState()
    for i in range(1, 6):
        result = check("rpm", state, 5, 1, T0 + i * 100)
        assert (result.allowed, result.used) == (True, i)
        state = result.state
    assert state.used == 5
    assert state.counts == (5,)


def test_retry_after_waits_only_for_the_oldest_needed_bucket() -> None:
    state = WindowState()
    for second in range(10):  # one request per second, limit 10
        result = check("rpm", state, 10, 1, T0 + second * 1000)
        assert result.allowed
        state = result.state
    now = T0 + 30_000
    refused = check("rpm", state, 10, 1, now)
    assert not refused.allowed
    # the request at T0 stops counting a window after its bucket [T0, T0+1s) started
    assert now + refused.retry_after_ms == T0 + 60_000
    assert check("rpm", state, 10, 1, now + refused.retry_after_ms).allowed
    # a request needing two slots waits for the second-oldest bucket too
    two = check("rpm", state, 10, 2, now)
    assert now + two.retry_after_ms == T0 + 1000 + 60_000


def test_weight_above_the_limit_is_refused_with_a_window_wait() -> None:
    result = check("tpm", WindowState(), 100, 101, T0)
    assert not result.allowed
    assert result.retry_after_ms == 60_000
    assert check("tpm", WindowState(), 100, 100, T0).allowed


def test_zero_limit_admits_nothing() -> None:
    assert not check("rpm", WindowState(), 0, 1, T0).allowed


def test_reset_is_when_the_oldest_counted_bucket_leaves() -> None:
    state = check("rpm", WindowState(), 5, 1, T0 + 250).state
    later = check("rpm", state, 5, 1, T0 + 20_000)
    assert later.reset_ms == T0 + 60_000
    empty = check("rpm", WindowState(), 5, 0, T0 + 7)
    assert empty.reset_ms == T0 + 7


def _brute_force(seed: int, name: str, limit: int, max_weight: int) -> tuple[int, int]:
    """Drive one window with random traffic; compare with a log of admitted timestamps."""
    rng = random.Random(seed)
    window = WINDOW_SECONDS[name] * 1000
    width = bucket_ms(name)
    # mostly dense traffic that presses on the limit, now and then a long pause
    steps = [0, 1, 7, width // 4, width - 1, width, width + 1, 2 * width, window // 3,
             window - width, window - 1, window, window + width]
    odds = [30, 10, 10, 10, 10, 10, 5, 5, 2, 1, 1, 1, 1]
    now = T0 + rng.randrange(window)
    state = WindowState()
    log: list[tuple[int, int]] = []  # (time, weight) of every admitted request
    admitted = refused = 0
    for _ in range(2_500):
        now += rng.choices(steps, odds)[0]
        weight = rng.randint(1, max_weight)
        result = check(name, state, limit, weight, now)
        # the rolling span (now-(W-bucket), now]: the bucketing counts all of it
        in_span = sum(w for t, w in log if now - t < window - width)
        counted = sum(w for t, w in log if now - t < window)  # an exact log: (now-W, now]
        if result.allowed:
            admitted += 1
            log.append((now, weight))
            # never over-admits: every span of a window less one bucket holds <= limit
            assert in_span + weight <= limit, (seed, now)
            assert result.used >= in_span + weight
        else:
            refused += 1
            # never stricter than a log of exact timestamps over the whole window
            assert counted + weight > limit, (seed, now)
            wait = result.retry_after_ms
            assert 1 <= wait <= window, (seed, now)
            if weight <= limit:
                assert check(name, state, limit, weight, now + wait).allowed, (seed, now)
            if wait > 1:
                assert not check(name, state, limit, weight, now + wait - 1).allowed
        state = decode(encode(result.state))  # as a store keeps it between requests
        log = [(t, w) for t, w in log if now - t < window + width]
    return admitted, refused


@pytest.mark.parametrize("seed", range(12))
def test_no_rolling_window_ever_holds_more_than_the_limit(seed: int) -> None:
    admitted, refused = _brute_force(seed, "rpm", 30, 1)
    assert admitted > 100  # the traffic did press on the limit
    assert refused > 100


@pytest.mark.parametrize("seed", range(6))
def test_weighted_token_windows_never_over_admit(seed: int) -> None:
    admitted, refused = _brute_force(1000 + seed, "tpm", 500, 120)
    assert admitted > 100
    assert refused > 100


@pytest.mark.parametrize("name", ["rph", "rpd"])
def test_long_windows_never_over_admit(name: str) -> None:
    admitted, refused = _brute_force(77, name, 20, 1)
    assert admitted > 20
    assert refused > 20


def test_rolled_keeps_only_buckets_that_still_count() -> None:
    state = WindowState(100, (1, 2, 3))  # buckets 98, 99, 100
    assert state.used == 6
    assert state.rolled(100) is state
    assert state.rolled(90) is state  # a clock behind the store's never drops counts
    assert state.rolled(101) == WindowState(101, (1, 2, 3, 0))
    assert state.rolled(97 + BUCKETS) == WindowState(157, (1, 2, 3) + (0,) * 57)
    assert state.rolled(98 + BUCKETS) == WindowState(158, (2, 3) + (0,) * 58)
    assert state.rolled(99 + BUCKETS) == WindowState(159, (3,) + (0,) * 59)
    assert state.rolled(100 + BUCKETS) == WindowState(160, ())
    assert len(state.rolled(157).counts) == BUCKETS
    assert WindowState().rolled(5) == WindowState(5, ())
    # a window an earlier version kept, with one bucket more, drops its oldest
    kept = WindowState(160, (9,) + (1,) * BUCKETS)
    assert kept.rolled(160) == WindowState(160, (1,) * BUCKETS)


def test_added() -> None:
    state = WindowState(100, (1, 2))
    assert state.added(100, 3) == WindowState(100, (1, 5))
    assert state.added(102, 4) == WindowState(102, (1, 2, 0, 4))
    assert WindowState().added(7, 2) == WindowState(7, (2,))


def test_adjusted_corrects_a_bucket_after_the_fact() -> None:
    state = WindowState(100, (10, 20, 30))  # buckets 98, 99, 100
    assert state.adjusted(99, -5) == WindowState(100, (10, 15, 30))
    assert state.adjusted(100, 7) == WindowState(100, (10, 20, 37))
    assert state.adjusted(98, -50) == WindowState(100, (0, 20, 30))  # never negative
    assert state.adjusted(97, -5) == state  # gone from the window: nothing to correct
    assert state.adjusted(101, -5) == state
    assert WindowState().adjusted(3, 1) == WindowState()


@pytest.mark.parametrize(
    "state",
    [WindowState(), WindowState(5, ()), WindowState(28_573_626, (3,)),
     WindowState(28_573_626, (0, 1, 0, 30) + (0,) * 56)],
)
def test_encode_decode_round_trip(state: WindowState) -> None:
    assert decode(encode(state)) == state


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**62), st.lists(st.one_of(
    st.integers(0, 70_000), st.integers(-(2**63), 2**63 - 1)), max_size=BUCKETS + 1))
def test_every_window_reads_back_as_it_was_written(newest: int, counts: list[int]) -> None:
    state = WindowState(newest, tuple(counts))
    stored = encode(state)
    assert decode(stored) == state
    assert len(stored) % 8  # never taken for the 64-bit form of earlier versions


def test_counts_are_packed_in_the_narrowest_width_that_holds_them() -> None:
    assert len(encode(WindowState(28_573_626, (65_535,) * 60))) == 1 + 8 + 2 * 60
    assert len(encode(WindowState(28_573_626, (65_536,) + (1,) * 59))) == 1 + 8 + 4 * 60
    assert len(encode(WindowState(28_573_626, (-1,) + (1,) * 59))) == 1 + 8 + 8 * 60


def test_the_64_bit_form_of_earlier_versions_still_reads() -> None:
    for state in (WindowState(), WindowState(28_573_626, (3,)),
                  WindowState(28_573_626, (0, 1, 0, 2**40) + (0,) * 56)):
        stored = array("q", (state.newest, *state.counts)).tobytes()
        assert decode(stored) == state


def test_decode_of_nothing_is_an_empty_window() -> None:
    assert decode(None) == WindowState()
    assert decode("") == WindowState()
    assert decode(b"") == WindowState()


def test_the_text_form_of_earlier_versions_still_reads() -> None:
    assert decode("12:1,0,2") == WindowState(12, (1, 0, 2))
    assert decode("12:") == WindowState(12, ())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(WINDOW_SECONDS)), st.integers(0, 10**7),
       st.lists(st.integers(-2, 9), max_size=BUCKETS + 1), st.integers(-70, 70),
       st.integers(0, 50), st.integers(0, 12))
def test_a_check_is_the_window_rolled_then_counted_and_its_reset_the_oldest_count(
    name: str, newest: int, counts: list[int], ahead: int, limit: int, weight: int,
) -> None:
    """What check answers, spelt out from the definitions: the window seen from now's
    bucket, the weight added when it fits, and the reset when the oldest bucket that
    counts leaves the window (now when none counts)."""
    width = bucket_ms(name)
    state = WindowState(newest, tuple(counts))
    now = (newest + ahead) * width + width // 2
    rolled = state.rolled(now // width)
    used = sum(rolled.counts)
    allowed = used + weight <= limit
    after = rolled.added(now // width, weight) if allowed else rolled
    oldest = next((i for i, c in enumerate(after.counts) if c), None)
    reset = now if oldest is None else (
        after.newest - len(after.counts) + 1 + oldest + BUCKETS) * width
    result = check(name, state, limit, weight, now)
    assert (result.allowed, result.state, result.used, result.reset_ms) == (
        allowed, after, used + weight if allowed else used, reset)
    # fits: check's answer when it allows, none when it refuses
    assert fits(name, state, limit, weight, now) == (
        (after, used + weight, reset) if allowed else None)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(WINDOW_SECONDS)), st.integers(0, 10**6),
       st.lists(st.tuples(st.sampled_from(("fits", "adjusted", "added")), st.integers(-3, 90),
                          st.integers(-5, 40)), max_size=40))
def test_a_window_s_kept_total_is_the_sum_of_its_counts(
    name: str, newest: int, steps: list[tuple[str, int, int]],
) -> None:
    """However a window was reached (admissions, settlements' corrections, rolling on), the
    sum it keeps is its counts' sum, and a check reads it as it would the counts."""
    width = bucket_ms(name)
    state, now = WindowState(newest, ()), newest * width
    for step, ahead, amount in steps:
        now += ahead * width // 3
        if step == "fits":
            fitted = fits(name, state, 60, max(0, amount), now)
            plain = fits(name, WindowState(state.newest, state.counts), 60, max(0, amount), now)
            assert fitted == plain
            assert fitted is None or fitted[0].total == sum(fitted[0].counts)
            state = state if fitted is None else fitted[0]
        elif step == "adjusted":
            state = state.adjusted(now // width - ahead % 3, amount)
        else:
            state = state.added(now // width, max(0, amount))
        assert state.total is None or state.total == sum(state.counts)
        assert state.used == sum(state.counts)


def test_windows_longer_than_any_kept_still_pack_as_before() -> None:
    # the layouts of the usual lengths are made once; a longer run of counts is packed the
    # same way, its layout made on the spot
    for n in (BUCKETS + 1, BUCKETS + 2, 3 * BUCKETS):
        state = WindowState(7, tuple(range(n)))
        stored = encode(state)
        assert stored == struct.pack(f"<cq{n}H", b"H", 7, *range(n))
        assert decode(stored) == state
