"""`Retry-After` is ASCII delay-seconds or an HTTP-date; anything else is None, and nothing
raises, whatever a webhook receiver or a provider sends."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from outlay.retry_after import LONGEST_S, parse_retry_after

NOW = datetime(2025, 6, 15, 12, tzinfo=UTC)
NOW_S = NOW.timestamp()


@pytest.mark.parametrize(("value", "seconds"), [
    ("0", 0.0), ("5", 5.0), ("120", 120.0), (" 5 ", 5.0), ("\t7\t", 7.0), ("007", 7.0),
    ("0000", 0.0), ("9" * 10, float(LONGEST_S)),
])
def test_delay_seconds_in_ascii_digits(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW_S) == seconds


@pytest.mark.parametrize("value", [
    "²",  # str.isdigit() says yes, float() says no: this raised in the delivery worker
    "٣", "５", "1²", "-1", "+3", "1e3", "1.5", "1_000", "0x10", "nan", "inf", "", " ", "5 s",
    "1 2", "soon", "5\x00", "\x005", "\u00a05", "5\n", "\udcb2",
])
def test_anything_else_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW_S) is None


def test_none_is_none() -> None:
    assert parse_retry_after(None, NOW_S) is None


@pytest.mark.parametrize("digits", [11, 4301, 1_000_000])
def test_a_huge_number_is_the_longest_wait_and_costs_nothing(digits: int) -> None:
    # 4301 digits and more would raise in int() (Python's limit on integer strings)
    assert parse_retry_after("9" * digits, NOW_S) == LONGEST_S
    assert parse_retry_after("1" + "0" * digits, NOW_S) == LONGEST_S
    assert parse_retry_after("0" * digits + "42", NOW_S) == 42.0


@pytest.mark.parametrize("form", [
    "{:%a, %d %b %Y %H:%M:%S} GMT",  # IMF-fixdate
    "{:%A, %d-%b-%y %H:%M:%S} GMT",  # RFC 850
    "{:%a %b %d %H:%M:%S %Y}",  # asctime: no zone, and GMT by definition
])
def test_an_http_date_is_seconds_from_now(form: str) -> None:
    later = NOW + timedelta(seconds=90)
    assert parse_retry_after(form.format(later), NOW_S) == 90.0


def test_a_date_in_the_past_is_now_and_one_far_ahead_is_the_longest_wait() -> None:
    earlier = format_datetime(NOW - timedelta(days=3), usegmt=True)
    assert parse_retry_after(earlier, NOW_S) == 0.0
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW_S) == LONGEST_S


@pytest.mark.parametrize("value", [
    "Mon, 99 Foo 2025 99:99:99 GMT", "Mon, 01 Jan 2030 25:00:00 GMT",
    "Mon, 01 Jan 99999 00:00:00 GMT", "Mon, 01 Jan 2030 00:00:00 +99999999999999999999",
    "Fri, 31 Dec 9999 23:59:59 -9999", "Mon, ٠١ Jan 2030 00:00:00 GMT", "Mon, 01 Jan",
])
def test_a_date_that_is_not_one_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW_S) is None


def test_nothing_made_of_digits_signs_and_date_words_raises() -> None:
    pieces = [*"0123456789 ,:+-.eE\t", "²", "٣", "\udcff", "\x00", "GMT", "Mon", "Jan",
              "Dec", "9999", "-2359", "+9999"]
    rng = random.Random(22)
    for _ in range(20_000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        seconds = parse_retry_after(value, NOW_S)
        assert seconds is None or 0.0 <= seconds <= LONGEST_S, value
