"""The circuit breaker's state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from outlay.upstream import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_closed_breaker_allows_calls(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock)
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(5))


def test_opens_after_n_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock)
    states = []
    for _ in range(3):
        breaker.record_failure()
        states.append(breaker.state)
    assert states == [BreakerState.CLOSED, BreakerState.CLOSED, BreakerState.OPEN]
    assert not breaker.allow()


def test_a_success_resets_the_failure_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_after_cool_down_lets_one_probe_through(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now += 9.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow(), "only one probe while half-open"


def test_probe_success_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(2, 10.0, clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_probe_failure_reopens_for_a_fresh_cool_down(clock: FakeClock) -> None:
    breaker = CircuitBreaker(5, 10.0, clock)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    clock.now += 3
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_a_probe_that_never_reports_is_replaced_after_a_cool_down(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    clock.now += 5
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()


def test_state_reads_do_not_claim_the_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now += 10
    for _ in range(3):
        assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_transitions_are_reported_once_each(clock: FakeClock) -> None:
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(2, 10.0, clock, on_change=lambda old, new: seen.append((old, new)))
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_failure()  # already open: no new transition
    clock.now += 10
    breaker.allow()
    breaker.record_failure()
    clock.now += 10
    breaker.allow()
    breaker.record_success()
    breaker.record_success()
    closed, opened, half = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    assert seen == [
        (closed, opened),
        (opened, half),
        (half, opened),
        (opened, half),
        (half, closed),
    ]


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(threshold, cooldown)
