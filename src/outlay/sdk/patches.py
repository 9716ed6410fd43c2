"""Replacing attributes of other libraries' classes, and putting back exactly what was there."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any


def optional_import(name: str) -> ModuleType | None:
    """The library, or None when it is not installed: interception skips what is absent."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


@dataclass(frozen=True)
class _Replaced:
    owner: type
    name: str
    own: bool  # whether `owner` defined the attribute itself, or inherited it
    original: Any  # the raw entry of owner.__dict__ (a function, not a bound method)


class Patches:
    """The replacements one interception made, undone in reverse order."""

    def __init__(self) -> None:
        self._done: list[_Replaced] = []

    def replace(self, owner: type, name: str, wrap: Callable[[Any], Any]) -> None:
        """Set `owner.name` to `wrap(current)`, where `current` is what `owner.name` resolves
        to now, inherited or not."""
        own = name in vars(owner)
        replaced = _Replaced(owner, name, own, vars(owner).get(name))
        setattr(owner, name, wrap(getattr(owner, name)))
        self._done.append(replaced)

    def undo(self) -> None:
        while self._done:
            done = self._done.pop()
            if done.own:
                setattr(done.owner, done.name, done.original)
            else:
                # an inherited attribute comes back by removing the one set on the subclass
                delattr(done.owner, done.name)

    def __len__(self) -> int:
        return len(self._done)
