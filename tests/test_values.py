"""`@value` classes: made like dataclasses, compared by value, replaced not mutated (mypy
refuses assignments to their fields in src/; at run time they are slotted dataclasses)."""

from __future__ import annotations

from dataclasses import field, replace

import pytest

from outlay.values import value


@value
class Point:
    x: int
    tags: list[str] = field(default_factory=list)


def test_a_value_compares_by_fields_and_is_replaced_whole() -> None:
    p = Point(1)
    assert p == Point(1, [])
    assert replace(p, x=2) == Point(2)
    assert p.x == 1
    assert not hasattr(p, "__dict__")  # slotted: no stray attributes either
    with pytest.raises(AttributeError):
        p.y = 3  # type: ignore[attr-defined]

