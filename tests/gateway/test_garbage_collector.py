"""A worker's garbage collector, once the worker is up: start-up's objects frozen out of its
sight, the young generation collected less often, and cycles still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from outlay.gateway.server import GC_YOUNG_THRESHOLD, settle_garbage_collector


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_start_up_objects_are_frozen_and_the_young_generation_is_larger(
        collector: None) -> None:
    config = {"start-up": ["config"]}
    assert any(o is config for o in gc.get_objects())
    settle_garbage_collector()
    assert gc.get_freeze_count() > 0
    assert not any(o is config for o in gc.get_objects())  # alive, and never walked again
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD


def test_cycles_made_after_start_up_are_still_collected_without_a_full_collection(
        collector: None) -> None:
    settle_garbage_collector()
    cycle = Node()
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None  # nothing frees a cycle but the collector
    # a young generation's worth of containers made and kept: the collector runs by itself
    made: list[list[int]] = [[] for _ in range(GC_YOUNG_THRESHOLD + 1_000)]
    assert gone() is None
    assert len(made) > GC_YOUNG_THRESHOLD
