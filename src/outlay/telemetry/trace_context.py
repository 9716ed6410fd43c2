"""W3C Trace Context: the trace an incoming `traceparent` names, and fresh ids. Pure."""

from __future__ import annotations

import re
from random import getrandbits
from typing import NamedTuple

TRACEPARENT = "traceparent"
# version 00 exactly; a later version is read by its first four fields (W3C §3.2.4)
_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class Parent(NamedTuple):
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16: the caller's span, this call's span's parent
    sampled: bool


def parse_traceparent(value: str | None) -> Parent | None:
    """The parent an incoming `traceparent` names; None when absent or malformed (the call
    then starts a trace of its own, as the specification asks: never an error)."""
    if value is None:
        return None
    found = _HEADER.fullmatch(value.strip())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return Parent(trace_id, span_id, bool(int(flags, 16) & 1))


def new_trace_id() -> str:
    # ids are not secrets: random's generator is far cheaper than os.urandom per call
    return f"{getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{getrandbits(64) or 1:016x}"
