"""Weighted endpoint ordering."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from outlay.upstream.routing import weighted_order


def test_every_order_is_a_permutation() -> None:
    rng = random.Random(7)
    items = ["a", "b", "c", "d"]
    for _ in range(100):
        assert sorted(weighted_order(items, [1, 2, 3, 4], rng)) == items


def test_first_choice_follows_the_weights() -> None:
    rng = random.Random(1234)
    firsts = Counter(weighted_order(["a", "b"], [3, 1], rng)[0] for _ in range(20_000))
    assert 0.72 < firsts["a"] / 20_000 < 0.78


def test_fallbacks_are_weighted_too() -> None:
    rng = random.Random(99)
    seconds = Counter(
        order[1]
        for order in (weighted_order(["a", "b", "c"], [100, 3, 1], rng) for _ in range(20_000))
        if order[0] == "a"
    )
    total = sum(seconds.values())
    assert 0.70 < seconds["b"] / total < 0.80


def test_zero_weight_items_come_last_in_list_order() -> None:
    rng = random.Random(3)
    for _ in range(50):
        assert weighted_order(["x", "a", "y"], [0, 1, 0], rng) == ["a", "x", "y"]


def test_items_need_not_be_comparable() -> None:
    objects = [object(), object()]
    assert len(weighted_order(objects, [1, 1], random.Random(0))) == 2


@pytest.mark.parametrize(("items", "weights"), [(["a"], [1, 2]), (["a"], [-1])])
def test_rejects_bad_weights(items: list[str], weights: list[int]) -> None:
    with pytest.raises(ValueError, match="weights"):
        weighted_order(items, weights, random.Random(0))


@pytest.mark.parametrize("weight", [0, 1, 7])
def test_a_single_endpoint_is_the_order_and_draws_nothing(weight: int) -> None:
    rng = random.Random(0)
    state = rng.getstate()
    assert weighted_order(["only"], [weight], rng) == ["only"]
    assert rng.getstate() == state
