"""Settlements kept after a failing store: applied again, backing off, until they land; a full
queue abandons to the reaper, counted and logged, never silently."""

from __future__ import annotations

import asyncio
import logging

import pytest

from outlay.state.base import Outcome, RetryCounts, StateError
from outlay.state.retries import SettlementRetries

from .support import eventually


class Store:
    """Fails while `down`; records what it applied."""

    def __init__(self) -> None:
        self.down = True
        self.applied: list[str] = []
        self.attempts = 0

    async def apply(self, outcome: Outcome) -> bool:
        self.attempts += 1
        if self.down:
            raise StateError("database is locked")
        self.applied.append(outcome.reservation_id)
        return True


async def test_a_kept_settlement_is_applied_once_the_store_is_back() -> None:
    store = Store()
    retries = SettlementRetries(store.apply, first_s=0.001, most_s=0.004)
    retries.keep(Outcome("req_1", 200, cost_micros=5))
    retries.keep(Outcome("req_2", 200, cost_micros=7))
    await eventually(lambda: store.attempts >= 4)  # tried again, backing off, while it fails
    assert retries.counts().waiting == 2
    store.down = False
    await eventually(lambda: retries.counts().waiting == 0)
    assert store.applied == ["req_1", "req_2"]  # in the order they came
    counts = retries.counts()
    assert counts.retried == store.attempts
    assert counts.abandoned == 0
    await retries.close()


async def test_the_wait_doubles_up_to_its_bound() -> None:
    store = Store()
    retries = SettlementRetries(store.apply, first_s=0.01, most_s=0.04)
    retries.keep(Outcome("req_1", 200))
    await asyncio.sleep(0.2)
    # 10, 20, 40, 40, 40 ms…: about 5 attempts in 200 ms, not 20
    assert 3 <= store.attempts <= 7
    await retries.close(timeout_s=0.1)


async def test_a_pass_stops_at_the_first_refusal() -> None:
    store = Store()
    retries = SettlementRetries(store.apply, first_s=60)
    for n in range(5):
        retries.keep(Outcome(f"req_{n}", 200))
    assert not await retries.retry_now()
    assert store.attempts == 1
    assert retries.counts() == RetryCounts(waiting=5, retried=1, abandoned=0)
    store.down = False
    assert await retries.retry_now()
    assert store.applied == [f"req_{n}" for n in range(5)]
    await retries.close()


async def test_one_settlement_is_kept_once() -> None:
    store = Store()
    retries = SettlementRetries(store.apply, first_s=60)
    retries.keep(Outcome("req_1", 200, cost_micros=5))
    retries.keep(Outcome("req_1", 200, cost_micros=9))  # a second try of the same call
    assert retries.counts().waiting == 1
    store.down = False
    await retries.retry_now()
    assert store.applied == ["req_1"]
    await retries.close()


async def test_a_full_queue_abandons_to_the_reaper_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    retries = SettlementRetries(store.apply, limit=2, first_s=60)
    with caplog.at_level(logging.ERROR, "outlay.state"):
        for n in range(3):
            retries.keep(Outcome(f"req_{n}", 200))
    assert retries.counts() == RetryCounts(waiting=2, retried=0, abandoned=1)
    assert "req_2" in caplog.text
    assert "reaper" in caplog.text
    store.down = False
    await retries.close()
    assert store.applied == ["req_0", "req_1"]


async def test_a_settlement_handed_back_while_applied_still_waits() -> None:
    # the Redis store's state being rebuilt: the script answers, but the settlement waits
    retries: SettlementRetries

    async def rebuilding(outcome: Outcome) -> bool:
        retries.keep(outcome)
        return True

    retries = SettlementRetries(rebuilding, first_s=60)
    retries.keep(Outcome("req_1", 200))
    assert not await retries.retry_now()
    assert retries.counts().waiting == 1
    await retries.close(timeout_s=0.1)


async def test_a_bug_keeps_the_settlement_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def buggy(outcome: Outcome) -> bool:
        raise KeyError("oops")

    retries = SettlementRetries(buggy, first_s=60)
    retries.keep(Outcome("req_1", 200))
    with caplog.at_level(logging.ERROR, "outlay.state"):
        assert not await retries.retry_now()
    assert retries.counts().waiting == 1
    assert "oops" in caplog.text
    await retries.close(timeout_s=0.1)


async def test_closing_tries_once_more_then_leaves_the_rest_to_the_reaper(
        caplog: pytest.LogCaptureFixture) -> None:
    store = Store()
    retries = SettlementRetries(store.apply, first_s=60)
    retries.keep(Outcome("req_1", 200))
    with caplog.at_level(logging.ERROR, "outlay.state"):
        await retries.close()
    assert store.attempts == 1
    assert "closing with 1 settlements not written" in caplog.text


async def test_a_settlement_being_applied_still_counts_as_waiting() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(outcome: Outcome) -> bool:
        started.set()
        await release.wait()
        return True

    retries = SettlementRetries(slow, first_s=60)
    retries.keep(Outcome("req_1", 200))
    applying = asyncio.ensure_future(retries.retry_now())
    async with asyncio.timeout(2):
        await started.wait()
    assert retries.counts().waiting == 1  # not landed yet
    release.set()
    assert await applying
    assert retries.counts().waiting == 0
    await retries.close()
