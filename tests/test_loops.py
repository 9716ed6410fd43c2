"""A background task is cancelled and waited for within a bound, even one that will not end."""

from __future__ import annotations

import asyncio
import contextlib
import time

from outlay.loops import cancelled


async def test_a_cancelled_task_is_waited_for() -> None:
    ended: list[bool] = []

    async def sleeper() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            ended.append(True)

    task = asyncio.ensure_future(sleeper())
    await asyncio.sleep(0)
    await cancelled(task)
    assert ended == [True]
    assert task.cancelled()


async def test_a_task_that_swallows_the_cancel_is_waited_for_no_longer_than_the_bound() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        await stop.wait()

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    await cancelled(task, timeout_s=0.2)
    assert 0.15 < time.monotonic() - started < 2.0
    assert not task.done()
    stop.set()
    await task


async def test_no_task_is_nothing_to_wait_for() -> None:
    await cancelled(None)
