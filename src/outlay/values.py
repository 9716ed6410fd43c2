"""`@value`: an immutable dataclass that is quick to make.

A frozen dataclass sets each field through `object.__setattr__`, three times the cost of a
plain one; the request path makes a score of such values per call. These are plain slotted
dataclasses at run time and frozen to the type checker (PEP 681's `frozen_default`), which
refuses any assignment to their fields in `src/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from typing_extensions import dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[T]) -> type[T]:
    return dataclass(slots=True)(cls)
