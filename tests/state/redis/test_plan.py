"""The Redis plan's pure half: a window's counts read from the reservation script's reply."""

from __future__ import annotations

from outlay.state.redis.plan import window_counts


def test_a_windows_counts_read_from_the_scripts_string() -> None:
    assert window_counts(" ".join(["0"] * 59 + ["7"])) == (0,) * 59 + (7,)
    assert window_counts(b"3 0 12") == (3, 0, 12)


def test_counts_past_64_bits_are_read_exactly() -> None:
    assert window_counts(f"1 {2**64} 2") == (1, 2**64, 2)
    assert window_counts(f"{2**70} -{2**66}") == (2**70, -(2**66))


def test_counts_json_would_refuse_are_read_as_integers() -> None:
    assert window_counts("007 1") == (7, 1)
