"""Background responses (OpenAI `background: true`): answered `queued`, with no usage, they
keep their reservation until they finish. The worker that created one polls it, with
bounded backoff, until it finishes or its reservation's lease ends, and settles it from the
finished response; the first answer showing it finished settles it, whoever asked (the
creating key may retrieve and cancel it through the gateway: `background_routes.py`).

The key that created a response stays its owner for a day after it finished, so it can
still retrieve the result the worker's own poll settled. With several workers, each leaves
a note of the responses it made (their key) in the workers' shared directory, so a
retrieval reaching another worker is answered too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from outlay.gateway.forward import request_headers
from outlay.upstream.base import Upstream, UpstreamBroken, UpstreamRequest, UpstreamUnreachable

log = logging.getLogger("outlay.gateway")

FINISHED = frozenset({"completed", "incomplete", "failed", "cancelled"})
# The worker's own polls: after 1 s, then twice as long each time, at most 30 s apart
FIRST_POLL_S = 1.0
MAX_POLL_S = 30.0
ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# How long a finished response's owner is remembered
RETAIN_S = 24 * 3600.0
# settles a held response from the answer showing it finished: (status, document, size)
Finish = Callable[[int, dict[str, Any], int], Awaitable[None]]


@dataclass
class Held:
    """A background response whose reservation is held until it finishes."""

    key_id: str
    finish: Finish
    deadline_ms: int  # its reservation's lease ends: polling stops, the reaper charges it
    poller: asyncio.Future[None] | None = None


class Background:
    """This worker's background responses, by response id."""

    def __init__(self, upstream: Upstream, clock: Callable[[], int],
                 directory: Path | None = None, first_poll_s: float = FIRST_POLL_S,
                 max_poll_s: float = MAX_POLL_S) -> None:
        self.upstream, self.clock = upstream, clock
        self.notes = None if directory is None else directory / "background"
        self.first_poll_s, self.max_poll_s = first_poll_s, max_poll_s
        self.held: dict[str, Held] = {}
        # every response made here, held or finished: (its key, when it is forgotten, ms)
        self.owners: dict[str, tuple[str, int]] = {}
        self._pruned_ms = 0

    def hold(self, response_id: str, key_id: str, deadline_ms: int, finish: Finish) -> None:
        held = Held(key_id, finish, deadline_ms)
        self.held[response_id] = held
        self.owners[response_id] = (key_id, deadline_ms + int(RETAIN_S * 1000))
        self._note(response_id, key_id)
        self._prune()
        held.poller = asyncio.ensure_future(self._poll(response_id, held))

    def owner(self, response_id: str) -> str | None:
        """The key that created a background response, on any worker of this server."""
        found = self.owners.get(response_id)
        if found is not None:
            return found[0] if found[1] > self.clock() else None
        if self.notes is None or not ID.match(response_id):
            return None
        note = self.notes / response_id
        try:
            if note.stat().st_mtime < time.time() - RETAIN_S:
                return None
            return note.read_text(encoding="ascii") or None
        except OSError:
            return None

    async def seen(self, response_id: str, status: int, body: bytes) -> None:
        """An answer about a held response: settle it if it says the response finished."""
        held = self.held.get(response_id)
        if held is None or not 200 <= status < 300:
            return
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(document, dict) or document.get("status") not in FINISHED:
            return
        self._drop(response_id)
        if held.poller is not None and held.poller is not asyncio.current_task():
            held.poller.cancel()
        await held.finish(status, document, len(body))

    async def send(self, method: str, response_id: str, headers: Mapping[str, str],
                   query: str) -> tuple[int, Mapping[str, str], bytes]:
        """Retrieve (GET) or cancel (POST) a response at the provider."""
        path = f"/responses/{response_id}" + ("/cancel" if method == "POST" else "")
        answer = await self.upstream.send(UpstreamRequest(
            provider="openai", method=method, path=path, headers=request_headers(headers),
            body=b"", stream=False, query=query))
        try:
            return answer.status, answer.headers, await answer.read()
        finally:
            await answer.close()

    async def close(self) -> None:
        """Stop polling (a stopping worker): the reaper settles what was held."""
        pollers = [h.poller for h in self.held.values() if h.poller is not None]
        for poller in pollers:
            poller.cancel()
        for poller in pollers:
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _poll(self, response_id: str, held: Held) -> None:
        wait = self.first_poll_s
        while response_id in self.held:
            left_s = (held.deadline_ms - self.clock()) / 1000
            if left_s <= 0:
                # the lease ran out: the reaper charges the whole reservation
                log.warning("background response %s unfinished at the end of its lease",
                            response_id)
                self._drop(response_id)
                return
            await asyncio.sleep(min(wait, left_s))
            wait = min(wait * 2, self.max_poll_s)
            try:
                status, _, body = await self.send("GET", response_id, {}, "")
            except (UpstreamUnreachable, UpstreamBroken) as exc:
                log.info("polling background response %s: %s", response_id, exc)
                continue
            await self.seen(response_id, status, body)

    def _drop(self, response_id: str) -> None:
        self.held.pop(response_id, None)

    def _prune(self) -> None:
        """Forget the owners of responses finished a day ago (at most once a minute)."""
        now = self.clock()
        if now - self._pruned_ms < 60_000:
            return
        self._pruned_ms = now
        for response_id, (_, until) in list(self.owners.items()):
            if until <= now:
                del self.owners[response_id]
        if self.notes is None:
            return
        oldest = time.time() - RETAIN_S
        with contextlib.suppress(OSError):
            for note in self.notes.iterdir():
                with contextlib.suppress(OSError):
                    if note.stat().st_mtime < oldest:
                        note.unlink()

    def _note(self, response_id: str, key_id: str) -> None:
        if self.notes is not None:
            with contextlib.suppress(OSError):
                self.notes.mkdir(exist_ok=True)
                (self.notes / response_id).write_text(key_id, encoding="ascii")


def held_response(document: object) -> str | None:
    """The id of a background response an answer says is not finished yet."""
    if not isinstance(document, dict) or document.get("background") is not True:
        return None
    response_id = document.get("id")
    if document.get("status") in FINISHED or not isinstance(response_id, str):
        return None
    return response_id if ID.match(response_id) else None
