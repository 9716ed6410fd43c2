"""Parsers for option values shared by commands: durations, labels, points in time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import click

from outlay.cli.output import moment

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Seconds, written plainly (3600) or with a unit: 90s, 30m, 12h, 7d."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if not match or int(match[1]) == 0:
        raise click.BadParameter(
            f"{value!r} is not a duration such as 3600, 90s, 30m, 12h or 7d", param=param
        )
    return int(match[1]) * _SECONDS[match[2]]


def labels(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` labels; a later one wins over an earlier one with the same key."""
    labels: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{text!r} is not a label of the form key=value", param=param)
        labels[key.strip()] = value
    return labels


def since(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Unix milliseconds from a duration ago (7d, 12h) or an ISO 8601 date/time."""
    if value is None:
        return None
    start = moment(value)
    if start is None:
        seconds = duration(_ctx, param, value)
        assert seconds is not None
        return int((datetime.now(UTC).timestamp() - seconds) * 1000)
    return int(start.timestamp() * 1000)
