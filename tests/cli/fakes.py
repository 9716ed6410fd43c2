"""A fake admin API: canned answers per route, and a record of every call the CLI makes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from click.testing import Result

ADMIN_TOKEN = "adm-secret"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class FakeAdmin:
    """Answers canned JSON per (method, path) and records every call it receives."""

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.answers[(method, path)] = (status, body)

    @property
    def last(self) -> Call:
        assert self.calls, "the CLI made no call"
        return self.calls[-1]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        self.calls.append(
            Call(
                request.method,
                request.path,
                dict(request.query),
                json.loads(text) if text else None,
                request.headers.get("Authorization"),
            )
        )
        status, body = self.answers.get(
            (request.method, request.path),
            (404, {"error": {"message": "no such route", "code": "not_found"}}),
        )
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)


RunCli = Callable[..., Awaitable[Result]]
