"""The retry schedule: exponential with jitter between 5 s and 1 h, a receiver's Retry-After
honoured, and no giving up before 24 h have passed since the event."""

from __future__ import annotations

import random

import pytest

from outlay.webhooks.backoff import Backoff

HOUR_MS = 3_600_000
T0 = 1_750_000_000_000


def test_the_first_retry_waits_the_base() -> None:
    assert Backoff().delay_s(1, random.Random(1)) == 5.0


@pytest.mark.parametrize("failures", range(1, 20))
def test_delays_grow_exponentially_up_to_the_cap(failures: int) -> None:
    policy, rng = Backoff(), random.Random(failures)
    ceiling = min(3600.0, 5.0 * 2 ** (failures - 1))
    delays = [policy.delay_s(failures, rng) for _ in range(200)]
    assert all(5.0 <= d <= ceiling for d in delays)
    if ceiling > 10:  # jittered: retries of many deliveries spread out
        assert max(delays) - min(delays) > (ceiling - 5.0) / 4


def test_a_huge_attempt_count_stays_at_the_cap() -> None:
    assert Backoff().delay_s(10_000, random.Random(0)) <= 3600.0


@pytest.mark.parametrize("seed", range(10))
def test_retries_go_on_for_at_least_24_hours_then_stop(seed: int) -> None:
    policy, rng = Backoff(), random.Random(seed)
    attempts, now = [T0], T0
    while (following := policy.next_attempt_ms(len(attempts), now, T0, rng)) is not None:
        assert following > now
        assert following - now <= HOUR_MS  # never more than the cap apart
        attempts.append(following)
        now = following
    assert attempts[-1] - T0 >= 24 * HOUR_MS
    assert attempts[-1] - T0 == 26 * HOUR_MS  # the last one lands on the horizon
    assert 26 < len(attempts) < 200


def test_the_schedule_is_reproducible_with_a_seeded_rng() -> None:
    def schedule(seed: int) -> list[int | None]:
        rng = random.Random(seed)
        return [Backoff().next_attempt_ms(n, T0, T0, rng) for n in range(1, 15)]

    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)


def test_retry_after_is_honoured_when_longer() -> None:
    policy = Backoff()
    assert policy.next_attempt_ms(1, T0, T0, random.Random(0), retry_after_s=120) == (
        T0 + 120_000)


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    assert Backoff().next_attempt_ms(1, T0, T0, random.Random(0), retry_after_s=1) == (
        T0 + 5_000)


def test_retry_after_is_bounded() -> None:
    policy = Backoff(max_retry_after_s=600)
    assert policy.next_attempt_ms(1, T0, T0, random.Random(0), retry_after_s=10**9) == (
        T0 + 600_000)


def test_retry_after_past_the_horizon_gets_one_last_attempt() -> None:
    policy = Backoff()
    now = T0 + 25 * HOUR_MS
    assert policy.next_attempt_ms(40, now, T0, random.Random(0), retry_after_s=7200) == (
        now + 2 * HOUR_MS)
    assert policy.next_attempt_ms(41, now + 2 * HOUR_MS, T0, random.Random(0)) is None


def test_a_settings_object_for_fast_tests() -> None:
    policy = Backoff(base_s=0.05, cap_s=0.2, horizon_s=1)
    rng = random.Random(0)
    assert policy.next_attempt_ms(1, T0, T0, rng) == T0 + 50
    assert policy.next_attempt_ms(9, T0 + 900, T0, rng) == T0 + 1000  # clipped to the horizon
    assert policy.next_attempt_ms(9, T0 + 1000, T0, rng) is None


@pytest.mark.parametrize("bad", [{"base_s": 0}, {"base_s": 10, "cap_s": 5}, {"horizon_s": -1}])
def test_nonsense_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**bad)
