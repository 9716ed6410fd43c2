"""Weighted ordering of a provider's endpoints: the order in which one call tries them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted_order(items: Sequence[T], weights: Sequence[int], rng: random.Random) -> list[T]:
    """A random permutation where each item comes first with probability weight / total.

    Efraimidis-Spirakis sampling: sort by u ** (1 / weight). Unlike picking one endpoint and
    falling back to list order, the fallbacks are weighted too, so a failed endpoint's share
    spreads over the others in proportion. Items of weight 0 come last, in list order.
    """
    if len(items) != len(weights):
        raise ValueError("items and weights differ in length")
    if len(items) == 1:  # one endpoint, as most providers have: nothing to draw
        if weights[0] < 0:
            raise ValueError("weights must not be negative")
        return [items[0]]
    keyed: list[tuple[float, int, T]] = []
    for index, (item, weight) in enumerate(zip(items, weights, strict=True)):
        if weight < 0:
            raise ValueError("weights must not be negative")
        key = rng.random() ** (1.0 / weight) if weight > 0 else -1.0
        # The index breaks ties so items themselves never need to be comparable.
        keyed.append((-key, index, item))
    keyed.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in keyed]
