"""`format=csv` on the reports: the JSON answer, once the access layer has kept only what the
token may see, written as CSV (a header row, then a line per report row or series point)."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from aiohttp import web

from outlay.admin.common import PREFIX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
POINT = ("start", "requests", "refused", "cost_usd")


def report_lines(answer: dict[str, Any]) -> Iterator[list[Any]]:
    group_by = answer["group_by"]
    columns = [group_by, "requests", "allowed", "refused", "cost_usd", "unsettled",
               "estimated", "out_usd"]
    yield columns
    for row in answer["rows"]:
        yield [row.get(c) for c in columns]


def series_lines(answer: dict[str, Any]) -> Iterator[list[Any]]:
    """One line per point; split, one per point of each value's series (the value in the
    second column)."""
    split = answer.get("split")
    if split is None:
        yield list(POINT)
        for point in answer["points"]:
            yield [point[c] for c in POINT]
        return
    yield [POINT[0], split, *POINT[1:]]
    for line in answer["series"]:
        for point in line["points"]:
            yield [point["start"], line[split], *(point[c] for c in POINT[1:])]


WRITERS = {f"{PREFIX}/reports": report_lines, f"{PREFIX}/reports/series": series_lines}


def as_csv(lines: Iterator[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    for line in lines:
        writer.writerow(["" if v is None else v for v in line])
    return out.getvalue().encode()


@web.middleware
async def csv_export(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    lines = WRITERS.get(request.path)
    if (lines is None or request.query.get("format") != "csv" or response.status != 200
            or not isinstance(response, web.Response) or not isinstance(response.body, bytes)):
        return response
    answer = orjson.loads(response.body)
    name = request.path.rsplit("/", 1)[-1]
    return web.Response(body=as_csv(lines(answer)), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
