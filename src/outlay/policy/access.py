"""Allow-lists: models (names, aliases, globs), free-only, vendors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase


def model_matches(
    patterns: Iterable[str], requested: str, resolved: str | None, aliases: Mapping[str, str]
) -> bool:
    """True when a pattern names the model, one of its aliases, or globs over either."""
    names = {requested} | ({resolved} if resolved else set())
    for pattern in patterns:
        target = aliases.get(pattern)
        if target is not None and target in names:
            return True
        if any(fnmatchcase(name, pattern) for name in names):
            return True
    return False


def vendor_matches(patterns: Iterable[str], vendor: str) -> bool:
    return any(fnmatchcase(vendor, pattern) for pattern in patterns)
