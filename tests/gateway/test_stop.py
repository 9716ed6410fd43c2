"""A worker's stop under one deadline (gateway/stop.py)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from outlay.gateway.stop import ANSWERS_S, CLOSING_S, CUT_S, Stop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_runs_from_the_first_begin() -> None:
    clock = Clock()
    stop = Stop(8.0, clock)
    assert stop.left() == 8.0  # not begun: all of it
    clock.now += 50
    stop.begin()
    clock.now += 2
    stop.begin()  # a second begin changes nothing
    assert stop.left() == pytest.approx(6.0)
    clock.now += 10
    assert stop.left() == 0.0


def test_the_answers_leave_the_closes_their_share() -> None:
    clock = Clock()
    stop = Stop(8.0, clock)
    stop.begin()
    assert stop.grace() == min(ANSWERS_S, 8.0 - CLOSING_S)
    clock.now += 4.5
    assert stop.grace() == pytest.approx(max(0.0, 3.5 - CLOSING_S))
    clock.now += 10
    assert stop.grace() == 0.0


async def test_a_step_in_time_is_timed_and_a_failure_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    stop = Stop(5.0)
    stop.begin()

    async def quick() -> None:
        await asyncio.sleep(0.02)

    async def broken() -> None:
        raise RuntimeError("the socket is gone")

    assert await stop.step("quick", quick())
    with caplog.at_level(logging.ERROR, logger="outlay"):
        assert await stop.step("broken", broken())
    assert "broken failed: RuntimeError('the socket is gone')" in caplog.text
    (name, seconds, cut), _ = stop.steps
    assert (name, cut) == ("quick", False)
    assert 0.02 <= seconds < 1.0
    assert "quick 0.0" in stop.report()


async def test_a_step_past_the_deadline_is_cancelled_and_the_stop_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    stop = Stop(0.3)
    stop.begin()
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="outlay"):
        assert not await stop.step("the hanging close", hangs())
    assert time.monotonic() - started < 0.3 + CUT_S + 0.5
    assert cancelled.is_set()
    assert "the hanging close did not finish" in caplog.text
    assert "the hanging close 0.3" in stop.report()
    assert "(cut short)" in stop.report()


async def test_a_step_that_ignores_its_cancellation_is_left_behind() -> None:
    stop = Stop(0.1)
    stop.begin()
    finished = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(CUT_S + 0.5)  # swallowed: it ends in its own time
        finished.set()

    started = time.monotonic()
    assert not await stop.step("stubborn", stubborn())
    assert time.monotonic() - started < 0.1 + CUT_S + 0.4
    assert not finished.is_set()
    await asyncio.wait_for(finished.wait(), 5)


async def test_a_step_given_a_floor_runs_when_nothing_is_left() -> None:
    """The store's close: it writes the queued settlements first, so it always begins."""
    stop = Stop(0.0)
    stop.begin()
    ran: list[str] = []

    async def close() -> None:
        await asyncio.sleep(0.05)
        ran.append("closed")

    assert await stop.step("state store", close(), at_least_s=1.0)
    assert ran == ["closed"]
    assert not await stop.step("telemetry", close())  # no floor: cut before it ran
    assert ran == ["closed"]


def test_the_report_names_what_took_time() -> None:
    clock = Clock()
    stop = Stop(8.0, clock)
    stop.begin()
    stop.took("answers in progress", 1.5)
    stop.took("upkeep", 0.001)
    stop.took("state store", 0.25, cut=True)
    clock.now += 1.8
    assert stop.report() == ("worker stopped in 1.80 s: answers in progress 1.50 s, "
                             "state store 0.25 s (cut short)")
    assert Stop(8.0, clock).report() == "worker stopped in 0.00 s"
