"""Plain-text rendering for people: aligned tables and short forms of times, money and labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

NONE = "-"


def cell(value: object) -> str:
    """One table cell: lists joined, labels as k=v, absent values as '-'."""
    if value is None or value == "" or value == [] or value == {}:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ",".join(cell(item) for item in value)
    if isinstance(value, float):
        return usd(value)
    return str(value)


def usd(value: object) -> str:
    """A USD amount at full precision, without float noise or exponents (1e-05 -> 0.00001)."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return str(value)
    try:
        # repr() first so that a float prints as it was written, not as its binary expansion.
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return str(value)
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def moment(value: object) -> datetime | None:
    """A time from the API: unix seconds or ISO 8601 text; None when it is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def when(value: object) -> str:
    """A time for people, to the second in UTC; text that is not a time is shown as sent."""
    if value is None or value == "":
        return NONE
    parsed = moment(value)
    if parsed is None:
        return str(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "") -> str:
    """Columns padded to their widest cell, two spaces apart; ``empty`` when there are no rows."""
    cells = [[cell(value) for value in row] for row in rows]
    if not cells and empty:
        return empty
    widths = [len(header) for header in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """A vertical record: one 'name: value' line per field, names aligned."""
    items = [(name, cell(value)) for name, value in pairs]
    width = max((len(name) for name, _ in items), default=0)
    return "\n".join(f"{(name + ':').ljust(width + 1)}  {value}" for name, value in items)


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(f"{by}{line}" for line in text.splitlines())
