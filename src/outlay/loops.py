"""The running event loop, kept by the objects of the request path that need it per call;
and the end of a background task, waited for within a bound."""

from __future__ import annotations

import asyncio


class RunningLoop:
    """`asyncio.get_running_loop()`, looked up once: on Python 3.11 each lookup costs a
    getpid(). Looked up again once the loop it kept is closed (tests run a loop each)."""

    __slots__ = ("loop",)

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None or loop.is_closed():
            loop = self.loop = asyncio.get_running_loop()
        return loop


async def cancelled(task: asyncio.Task[None] | None, timeout_s: float = 2.0) -> None:
    """Cancel a background task and wait for it to end, at most `timeout_s`: a stopping
    worker never waits for ever on a task that is slow to end (or swallows the cancel)."""
    if task is not None:
        task.cancel()
        await asyncio.wait({task}, timeout=timeout_s)
