"""A stream whose agent hung up: the provider goes on generating (and billing) after the
agent is gone, so the rest of the stream is read, unsent, for the usage it reports at its
end, within bounds of time and bytes; past them the upstream is closed and what it showed
so far is counted instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from outlay.gateway.usage_tap import UsageTap
from outlay.upstream.base import UpstreamBroken


async def read_on(chunks: AsyncIterator[bytes], tap: UsageTap, seconds: float,
                  max_bytes: int) -> bool:
    """Feed `tap` the rest of a stream until it reports its end, for at most `seconds` and
    `max_bytes` more; True when the stream ended within them (its usage, if it reports
    one, is in `tap`), False when a bound was hit or the stream broke."""
    if seconds <= 0 or max_bytes <= 0:
        return False
    read = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in chunks:
                tap.feed(chunk)
                if tap.finished:
                    return True
                read += len(chunk)
                if read >= max_bytes:
                    return False
    except (TimeoutError, UpstreamBroken):
        return False
    return True  # the provider closed the stream: all it had to say was said
