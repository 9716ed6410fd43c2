"""A failure that repeats on every call is logged once a burst, then at most every few
seconds with a count of the lines left out."""

from __future__ import annotations

import logging

import pytest

from outlay.gateway.outages import Throttled


def test_a_burst_is_one_line_then_one_every_interval_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttled = Throttled(every_s=5, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "outlay.gateway"):
        for _ in range(10):
            throttled.warn("store down")
        now[0] += 4.9
        throttled.warn("store down")
        now[0] += 0.2
        throttled.warn("store still down")
        now[0] += 60
        throttled.warn("store down again")
    assert [r.getMessage() for r in caplog.records] == [
        "store down",
        "store still down (and 10 more since the last line)",
        "store down again",
    ]
