"""Money: exact micro-USD parsing that rounds charges up, and exact decimal rendering."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from outlay.policy.money import MAX_USD, MICROS_PER_USD, ceil_div, micros_to_usd, usd_to_micros


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("0", 0),
        (0, 0),
        ("1", 1_000_000),
        (5, 5_000_000),
        ("0.1", 100_000),
        (0.1, 100_000),  # read through repr: not 0.1000000000000000055511151231257827
        (0.3, 300_000),
        (0.1 + 0.2, 300_001),  # 0.30000000000000004 is more than 0.3: rounds up
        (1 / 3, 333_334),
        ("0.000001", 1),
        ("0.0000001", 1),  # below a micro-dollar still charges one
        ("0.0000011", 2),
        (1e-7, 1),
        ("1e-6", 1),
        ("2.5E+3", 2_500_000_000),
        (Decimal("12.345678"), 12_345_678),
        (Decimal("12.3456781"), 12_345_679),
        ("50", 50_000_000),
    ],
)
def test_usd_to_micros_parses_and_rounds_up(value: object, micros: int) -> None:
    assert usd_to_micros(value) == micros


def test_long_amount_still_rounds_up() -> None:
    # 32 significant digits: beyond the default decimal context, which would round it down
    assert usd_to_micros("1.0000000000000000000000000000001") == 1_000_001
    assert usd_to_micros("0." + "0" * 5000 + "1") == 1
    assert usd_to_micros("1e-999999999") == 1


@pytest.mark.parametrize(
    "value",
    [
        -1, -0.01, "-0.000001", "-1e-9", Decimal("-3"),
        float("nan"), "NaN", "sNaN", Decimal("NaN"),
        float("inf"), "Infinity", "-inf",
        True, False,
        None, "", "abc", "1,5", "$1", [1], {"usd": 1},
    ],
)
def test_usd_to_micros_rejects_non_amounts(value: object) -> None:
    with pytest.raises(ValueError, match="USD amount"):
        usd_to_micros(value)


@pytest.mark.parametrize("value", [MAX_USD + 1, "1000000000000.000001", "1e999990", "1e999999999"])
def test_usd_to_micros_rejects_amounts_too_large_quickly(value: object) -> None:
    # an amount past MAX_USD would not fit the stores' 64-bit integers (and "1e999990" once
    # took some 40 s to turn into an int)
    with pytest.raises(ValueError, match="largest supported"):
        usd_to_micros(value)


def test_max_usd_is_accepted_and_fits_64_bits() -> None:
    assert usd_to_micros(MAX_USD) == MAX_USD * MICROS_PER_USD < 2**63 // 8


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0"),
        (1, "0.000001"),
        (10, "0.00001"),
        (1_500, "0.0015"),
        (100_000, "0.1"),
        (1_000_000, "1"),
        (1_230_000, "1.23"),
        (50_000_000, "50"),
        (123_456_789, "123.456789"),
        (-1_500, "-0.0015"),
        (-2_000_000, "-2"),
    ],
)
def test_micros_to_usd_renders_exactly(micros: int, text: str) -> None:
    assert micros_to_usd(micros) == text


def test_render_then_parse_is_the_identity() -> None:
    rng = random.Random(20240229)
    for _ in range(2_000):
        micros = rng.choice([rng.randrange(0, 10**3), rng.randrange(0, 10**9),
                             rng.randrange(0, 10**15)])
        assert usd_to_micros(micros_to_usd(micros)) == micros
        assert Decimal(micros_to_usd(micros)) * MICROS_PER_USD == micros


@pytest.mark.parametrize(
    ("numerator", "denominator", "quotient"),
    [(0, 3, 0), (1, 3, 1), (3, 3, 1), (4, 3, 2), (999, 1000, 1), (1000, 1000, 1),
     (1001, 1000, 2), (61_000, 1000, 61)],
)
def test_ceil_div(numerator: int, denominator: int, quotient: int) -> None:
    assert ceil_div(numerator, denominator) == quotient
