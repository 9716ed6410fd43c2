"""W3C traceparent: a well-formed one is joined; anything else starts a new trace."""

from __future__ import annotations

import pytest

from outlay.telemetry.trace_context import (
    Parent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_well_formed_parent_is_read() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") == Parent(TRACE, SPAN, True)
    assert parse_traceparent(f" 00-{TRACE}-{SPAN}-00 ") == Parent(TRACE, SPAN, False)
    # a later version is read by its first four fields, whatever follows
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-03-what-comes") == Parent(TRACE, SPAN, True)


@pytest.mark.parametrize("value", [
    None, "", "garbage", f"00-{TRACE}-{SPAN}", f"00-{TRACE}-{SPAN}-01-extra",
    f"00-{TRACE.upper()}-{SPAN}-01", f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01",
    f"ff-{TRACE}-{SPAN}-01", f"00-{TRACE[:-1]}-{SPAN}-01", f"0-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-1", f"00_{TRACE}_{SPAN}_01", f"00-{TRACE}-{SPAN}-0g",
])
def test_a_malformed_parent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_new_ids_are_hex_of_their_length_and_never_zero() -> None:
    traces = {new_trace_id() for _ in range(100)}
    spans = {new_span_id() for _ in range(100)}
    assert len(traces) == len(spans) == 100
    assert all(len(t) == 32 and int(t, 16) for t in traces)
    assert all(len(s) == 16 and int(s, 16) for s in spans)
