"""Settlements that met a failing store, kept by the worker and applied again until they land.

A settlement that cannot be written (the store locked, full, unreachable, or its batch's
write failing) is never dropped: it waits here, and is tried again after 50 ms, then after
twice as long each time the store still fails, at most every 5 s, in the order it came. It
leaves when it lands, or when the store answers that the reservation is no longer held (the
reaper charged it in full meanwhile, or an earlier attempt did land and only its answer was
lost): a settlement applies once, so trying one again can never charge twice.

The queue is bounded (LIMIT settlements, a few MB): past it a settlement is not kept but
counted as abandoned and logged, and its reservation stays held until the reaper charges it
in full after its lease, which can only make the caps stricter. Until a kept settlement
lands, its reservation's money stays held as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from outlay.loops import cancelled
from outlay.state.base import Outcome, RetryCounts, StateError

log = logging.getLogger("outlay.state")

LIMIT = 10_000
FIRST_S = 0.05
MOST_S = 5.0


class SettlementRetries:
    """`apply` settles one outcome (True: applied, False: nothing left to settle) or raises
    StateError; it may hand the outcome back with `keep` (a store that is being rebuilt)."""

    def __init__(
        self, apply: Callable[[Outcome], Awaitable[bool]], *, limit: int = LIMIT,
        first_s: float = FIRST_S, most_s: float = MOST_S,
    ) -> None:
        self._apply = apply
        self.limit = limit
        self.first_s, self.most_s = first_s, most_s
        self._delay = first_s
        self._waiting: dict[str, Outcome] = {}  # by reservation: the first outcome wins
        self._trying: set[str] = set()  # taken out of _waiting while applied
        self._retried = 0
        self._abandoned = 0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def counts(self) -> RetryCounts:
        waiting = len(self._waiting) + len(self._trying.difference(self._waiting))
        return RetryCounts(waiting, self._retried, self._abandoned)

    def keep(self, outcome: Outcome) -> None:
        """Keep a settlement that did not land, to apply it again (from the event loop)."""
        if outcome.reservation_id not in self._waiting:
            if len(self._waiting) >= self.limit:
                self._abandoned += 1
                log.error("%d settlements already wait for the state store: the settlement "
                          "of %s is not kept, and the reaper will charge its reservation in "
                          "full", len(self._waiting), outcome.reservation_id)
                return
            self._waiting[outcome.reservation_id] = outcome
        self._schedule()

    async def retry_now(self) -> bool:
        """Try every waiting settlement once, in order, stopping at the first the store
        refuses; True when none waits any more."""
        for request_id in list(self._waiting):
            outcome = self._waiting.pop(request_id, None)
            if outcome is None:  # landed by another pass meanwhile
                continue
            self._retried += 1
            self._trying.add(request_id)
            try:
                await self._apply(outcome)
            except BaseException as exc:  # StateError, a bug, or cancelled: kept, first
                if request_id not in self._waiting:
                    self._waiting = {request_id: outcome, **self._waiting}
                if not isinstance(exc, Exception):
                    raise
                if isinstance(exc, StateError):
                    log.warning("%d settlements wait for the state store: %s",
                                len(self._waiting), exc)
                else:
                    log.exception("applying a waiting settlement failed; kept")
                return False
            finally:
                self._trying.discard(request_id)
        return not self._waiting

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop retrying in the background, after one last pass of at most `timeout_s`;
        what still waits then is left to the reaper (and logged)."""
        self._stop_timer()
        task, self._task = self._task, None
        await cancelled(task)
        if self._waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.retry_now(), timeout_s)
        self._stop_timer()  # scheduled again by a keep during the last pass
        if self._waiting:
            log.error("closing with %d settlements not written: the reaper will charge "
                      "their reservations in full", len(self._waiting))

    def _schedule(self) -> None:
        if self._timer is None and self._task is None and self._waiting:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._pass())

    async def _pass(self) -> None:
        landed = await self.retry_now()  # never raises; cancelled by close()
        self._delay = self.first_s if landed else min(self._delay * 2, self.most_s)
        self._task = None
        self._schedule()
