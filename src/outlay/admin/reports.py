"""Reports from the ledger: totals by a column or a label (GET /admin/v1/reports) and spend
over time (GET /admin/v1/reports/series), each also as CSV (`format=csv`, admin/csv_export.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from aiohttp import web

from outlay.admin.common import dump
from outlay.gateway.context import GATEWAY
from outlay.policy.errors import invalid_request
from outlay.policy.model import TAG_NAME, PolicyError, parse_scope
from outlay.policy.series import (
    INTERVAL_MS,
    MAX_POINTS,
    SPLITS,
    Interval,
    SeriesQuery,
    points_in,
    series_answer,
)

GROUPS = ("key", "agent", "group", "vendor", "model")
FORMATS = ("json", "csv")
# the points a series has when it names no start: a day of hours, thirty days
DEFAULT_SPAN = {"hour": 24, "day": 30}


def check_format(request: web.Request) -> None:
    if request.query.get("format", "json") not in FORMATS:
        raise invalid_request("format must be json or csv", "format")


def group_of(text: str) -> str:
    """A report's `group_by`: a ledger column, or `label:<name>` (the calls by that label's
    value, a key's label or a call's tag)."""
    if text in GROUPS:
        return text
    if text.startswith("label:") and TAG_NAME.fullmatch(text.removeprefix("label:")):
        return text
    raise invalid_request("group_by must be key, agent, group, vendor, model or "
                          "label:<name> (a label or tag name)", "group_by")


async def report(request: web.Request) -> web.Response:
    group_by = group_of(request.query.get("group_by", "agent"))
    check_format(request)
    since = request.query.get("since_ms")
    if since is not None and not since.isdigit():
        raise invalid_request("since_ms must be a unix time in milliseconds", "since_ms")
    rows = await request.app[GATEWAY].store.report(group_by, int(since) if since else None)
    return dump({"group_by": group_by, "rows": rows})


def moment(request: web.Request, name: str) -> int | None:
    """A query time: unix milliseconds, or an ISO 8601 date or time (UTC unless it says)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid_request(f"{name} must be an ISO 8601 date or time (2026-12-01, "
                              f"2026-12-01T05:00:00Z) or unix milliseconds, got {raw!r}",
                              name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def series_query(request: web.Request, now_ms: int) -> SeriesQuery:
    """A series request's parameters, each checked: a bad one is a 400 naming it."""
    q = request.query
    try:
        scope = parse_scope(q.get("scope", "global"))
    except PolicyError as err:
        raise invalid_request(str(err), "scope") from None
    if scope.endswith("=*"):
        raise invalid_request("a series is of one scope: tag:<name>=<value>, not =*", "scope")
    interval = q.get("interval", "hour")
    if interval not in INTERVAL_MS:
        raise invalid_request("interval must be hour or day", "interval")
    split = q.get("split") or None
    if split is not None and split not in SPLITS:
        raise invalid_request(f"split must be one of {', '.join(SPLITS)}", "split")
    check_format(request)
    until = moment(request, "until")
    until = now_ms + 1 if until is None else until  # now included
    since = moment(request, "since")
    if since is None:  # the interval holding the last moment, and those before it
        step = INTERVAL_MS[interval]
        since = (until - 1) - (until - 1) % step - (DEFAULT_SPAN[interval] - 1) * step
    if since >= until:
        raise invalid_request("since must be before until", "since")
    points = points_in(cast(Interval, interval), since, until)
    if points > MAX_POINTS:
        raise invalid_request(f"the range from since to until holds {points} intervals of "
                              f"a {interval}; at most {MAX_POINTS}", "since")
    return SeriesQuery(scope, cast(Interval, interval), since, until, split)


async def series(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    query = series_query(request, gw.clock())
    return dump(series_answer(query, await gw.store.series(query)))
