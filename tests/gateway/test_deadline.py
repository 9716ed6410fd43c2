"""The one timer a connection keeps for its time limits (gateway/deadline.py)."""

from __future__ import annotations

import asyncio
import math

from outlay.gateway.deadline import Deadline

TICK = 0.02


def deadline() -> tuple[Deadline, list[float]]:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    return Deadline(loop, lambda: fired.append(loop.time())), fired


async def test_it_fires_once_when_due() -> None:
    watch, fired = deadline()
    start = watch.loop.time()
    watch.start(TICK)
    await asyncio.sleep(3 * TICK)
    assert len(fired) == 1
    assert fired[0] - start >= TICK - 0.002
    assert watch.at == math.inf  # nothing due any more


async def test_a_later_deadline_keeps_the_timer_and_fires_at_the_new_time() -> None:
    watch, fired = deadline()
    watch.start(TICK)
    timer = watch._timer
    watch.start(4 * TICK)
    assert watch._timer is timer  # only the time is recorded
    await asyncio.sleep(2 * TICK)
    assert fired == []  # the timer fired early, and set itself again
    await asyncio.sleep(4 * TICK)
    assert len(fired) == 1


async def test_an_earlier_deadline_replaces_the_timer() -> None:
    watch, fired = deadline()
    watch.start(10.0)
    watch.start(TICK)
    await asyncio.sleep(3 * TICK)
    assert len(fired) == 1


async def test_stop_and_cancel_leave_nothing_due() -> None:
    watch, fired = deadline()
    watch.start(TICK)
    watch.stop()
    await asyncio.sleep(3 * TICK)
    assert fired == []
    watch.start(TICK)  # a stopped deadline starts again
    watch.cancel()
    assert watch._timer is None
    await asyncio.sleep(3 * TICK)
    assert fired == []
