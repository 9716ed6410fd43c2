"""The vendor read-first line of the benchmark harness (bench/vendor_read.py): the mock's
Stripe answers what Outlay's pricing reads as a payment intent, and the line says what a
read adds. No benchmark runs here."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from outlay.vendors import VendorCall, pricing_for
from outlay.vendors.objects import ObjectPricing

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def vendor_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(BENCH))  # as bench/run.py runs it: its modules by name
    module = importlib.import_module("vendor_read")
    yield module
    for name in ("vendor_read", "measure"):
        sys.modules.pop(name, None)


def test_the_mock_answers_are_intents_outlay_reads_and_nginx_can_quote(
        vendor_read: ModuleType) -> None:
    pricing = pricing_for("stripe", {})
    assert isinstance(pricing, ObjectPricing)
    capture = pricing.object_call(VendorCall(
        "stripe", "POST", "/v1/payment_intents/pi_bench_1/capture", "", b"", {}))
    assert capture is not None
    for answer, exposure in ((vendor_read.INTENT, 20_000_000), (vendor_read.CAPTURED,
                                                                 20_000_000)):
        seen = pricing.seen(capture, json.dumps(answer).encode())
        assert seen is not None
        assert seen.exposure == exposure
    locations = vendor_read.stripe_locations()
    bodies = re.findall(r"return 200 '([^']*)';", locations)
    assert len(bodies) == 3
    assert all("$" not in body and "\\" not in body for body in bodies)


def test_the_line_says_what_a_read_adds(vendor_read: ModuleType) -> None:
    result = vendor_read.VendorRead(
        300, {"plain": 1.0, "counted": 1.25, "read first": 2.5},
        {"plain": 3.0, "counted": 3.5, "read first": 6.0}, 0)
    lines = result.lines()
    assert "| read first | 2.50 ms | 6.00 ms |" in lines
    assert lines[-1] == ("A payment Outlay has not counted adds +1.50 ms at the p50 over a "
                         "plain vendor pass-through (+0.25 ms for one it counts already).")
