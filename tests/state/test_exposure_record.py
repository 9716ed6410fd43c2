"""The arithmetic of an object's record (state.exposure), which both stores apply: what a call
holds on it, what its answer lets go, and to which charges a give-back goes."""

from __future__ import annotations

from typing import Any

from outlay.state.exposure import (
    UNKNOWN,
    Credit,
    ExposureReport,
    Record,
    forgotten,
    reserved,
    settled,
)


def settle(record: Record, request_id: str, reserved_amount: int, cost: int,
           shows: int | None, *, linked: bool = True, settlement: str = "settled",
           who: str = "a") -> list[Credit]:
    report = None if settlement != "settled" else ExposureReport("pi_1", shows, "{}")
    holds: list[Any] = [[f"agent:{who}", "total", 0]]
    return settled(record, linked=linked, request_id=request_id, settlement=settlement,
                   reserved_amount=reserved_amount, cost=cost, holds=holds,
                   who=[who], report=report)


def test_a_create_adds_its_charge_and_a_call_on_it_its_increase() -> None:
    record = Record()
    assert settle(record, "r1", 20, 20, 20, linked=False) == []
    assert (record.held, record.inflight, record.version, len(record.charges)) == (20, 0, 1, 1)
    reserved(record, 30)
    assert (record.held, record.inflight, record.version) == (50, 1, 2)
    assert settle(record, "r2", 30, 30, 50) == []
    assert (record.held, record.inflight, record.version) == (50, 0, 3)
    assert [c[:2] for c in record.charges] == [["r1", 20], ["r2", 30]]


def test_a_void_releases_the_increase_and_shows_nothing() -> None:
    record = Record(held=20, charges=[["r1", 20, [], ["a"]]])
    reserved(record, 30)
    assert settle(record, "r2", 30, 0, None, settlement="void") == []
    assert (record.held, record.seen, len(record.charges)) == (20, None, 1)


def test_what_no_answer_holds_is_given_back_newest_charge_first() -> None:
    record = Record(held=50, charges=[["r1", 20, [], ["a"]], ["r2", 30, [], ["b"]]])
    reserved(record, 0)
    credits = settle(record, "r3", 0, 0, 15)
    assert [(c.request_id, c.amount, c.who) for c in credits] == [
        ("r2", 30, ["b"]), ("r1", 5, ["a"])]
    assert (record.held, [c[:2] for c in record.charges]) == (15, [["r1", 15]])


def test_an_answer_that_shows_nothing_keeps_everything_until_the_next_that_does() -> None:
    record = Record(held=20, charges=[["r1", 20, [], ["a"]]])
    reserved(record, 0)
    assert settle(record, "r2", 0, 0, None, settlement="unsettled") == []
    assert (record.held, record.seen) == (20, None)
    reserved(record, 0)
    reserved(record, 0)
    assert settle(record, "r3", 0, 0, None) == []  # a 2xx that shows nothing
    assert record.seen == UNKNOWN
    assert settle(record, "r4", 0, 0, 0) == []  # the overlap saw an unknown answer
    assert (record.held, record.seen) == (20, None)
    reserved(record, 0)
    assert [c.amount for c in settle(record, "r5", 0, 0, 0)] == [20]


def test_overlapping_answers_leave_the_most_any_of_them_shows() -> None:
    record = Record(held=20, charges=[["r1", 20, [], ["a"]]])
    reserved(record, 10)
    reserved(record, 0)
    assert settle(record, "r3", 0, 0, 0) == []  # one still in flight: nothing given yet
    assert record.seen == 0
    assert settle(record, "r2", 10, 10, 30) == []
    assert (record.held, record.seen, record.inflight) == (30, None, 0)


def test_a_record_with_nothing_left_is_forgotten() -> None:
    record = Record()
    reserved(record, 0)
    settle(record, "r1", 0, 0, None, settlement="void")
    assert forgotten(record)
    assert not forgotten(Record(state="{}"))
    assert not forgotten(Record(held=1))
