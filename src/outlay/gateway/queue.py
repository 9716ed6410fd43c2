"""Calls waiting in the gateway for room in a rate window (`on_rate_limit: queue`).

A call its policies queue is refused by the store as RateHeld, nothing recorded; it waits
here, holding no reservation, in the worker's FairQueue (arrival order within an agent,
round-robin across agents). One task per worker tries the calls whose turn it is, one store
call each: at once when a call of this worker settles, at a window's reset for a window that
only time frees, and every POLL_S at most for calls in flight elsewhere (other workers,
replicas) to settle. Waiting never polls the store in a tight loop: one refusal by a scope
the waiting calls share ends a round. A call whose wait is over, whose client hung up, or
that finds the queue full (`server.queue_max_waiting`) is decided by its own request again
without queueing; a gateway shutting down has every waiting call decided so at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from outlay.policy.errors import RateHeld
from outlay.policy.fair_queue import FairQueue
from outlay.state.base import Outcome, Reservation, StateError, StateStore, Ticket

POLL_S = 0.25  # the longest a waiting call goes without asking, when calls elsewhere may free room
MIN_PAUSE_S = 0.001  # between two rounds, whatever is due
GONE_POLL_S = 0.5  # how often a waiting call looks whether its client is still there
DEFAULT_MAX_WAITING = 1000  # calls of one worker waiting at once (server.queue_max_waiting)
# the refusals only calls in flight settling free: asked again on settlements and polls
_IN_FLIGHT = frozenset({"concurrency_limit_exceeded", "provider_rate_limited"})
# and those a settlement of this worker may free (tpm: a call's count corrected to its usage)
_SETTLING = _IN_FLIGHT | {"token_rate_limit_exceeded"}
# scopes of one key or agent: a refusal there says nothing of the other agents' calls
_OWN = ("key:", "agent:")

Answer = Reservation | BaseException | None  # None: decide the call again without queueing


def retry_in(held: RateHeld) -> float:
    """How long before the store may say otherwise: a window frees at its reset; calls in
    flight may settle any time, so those are asked again within POLL_S."""
    retry = float(held.details.get("retry_after") or 1)
    if held.code in _IN_FLIGHT:
        return min(retry, POLL_S)
    reset = held.details.get("reset_unix")
    return max(0.0, float(reset) - time.time()) if reset is not None else retry


@dataclass(eq=False)
class _Waiter:
    ticket: Ticket
    agent: str
    retry_at: float
    since: float
    answer: asyncio.Future[Answer] = field(repr=False)
    freed_by_settling: bool = False  # a settlement may make room for it (see _SETTLING)

    def refused(self, held: RateHeld, now: float) -> None:
        self.retry_at = now + retry_in(held)
        self.freed_by_settling = held.code in _SETTLING


@dataclass
class RateQueue:
    limit: int = DEFAULT_MAX_WAITING
    _order: FairQueue[_Waiter] = field(init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    closed: bool = False

    def __post_init__(self) -> None:
        self._order = FairQueue(self.limit)

    @property
    def depth(self) -> int:
        return len(self._order)

    def released(self) -> None:
        """A call of this worker settled: the calls it may make room for are asked now."""
        if self._order:
            for waiter in self._order.turns():
                if waiter.freed_by_settling:
                    waiter.retry_at = 0.0
            self._wake.set()

    async def wait(self, store: StateStore, ticket: Ticket, held: RateHeld, agent: str,
                   gone: Callable[[], bool] | None = None) -> Answer:
        """The call's reservation once it fits (or the refusal a later decision gave);
        None when it must be decided now without queueing: its wait is over, its client
        hung up, the queue is full or the gateway stops."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiter = _Waiter(ticket, agent, now, now, loop.create_future())
        waiter.refused(held, now)
        if self.closed or not self._order.join(agent, waiter):
            return None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._serve(store))
        self._wake.set()
        deadline = now + held.wait_s
        try:
            while (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait((waiter.answer,), timeout=min(left, GONE_POLL_S))
                if done:
                    return waiter.answer.result()
                if gone is not None and gone():
                    return held  # the client hung up: nothing is sent, nothing recorded
            return None
        finally:
            self._order.leave(agent, waiter)
            if not waiter.answer.done():
                waiter.answer.cancel()  # the server task voids a reservation made too late

    def close(self) -> None:
        """The gateway stops: every waiting call is decided now, without queueing. The
        server task ends after the decision it may be making (voided if it admits)."""
        self.closed = True
        for waiter in self._order.waiting():
            if not waiter.answer.done():
                waiter.answer.set_result(None)
        self._wake.set()

    async def _serve(self, store: StateStore) -> None:
        loop = asyncio.get_running_loop()
        while self._order and not self.closed:
            self._wake.clear()
            for waiter in self._order.turns():
                if waiter.answer.done() or self.closed:
                    continue
                now = loop.time()
                if waiter.retry_at > now:
                    continue
                waited_ms = round((now - waiter.since) * 1000)
                try:
                    reservation = await store.reserve(replace(
                        waiter.ticket, may_queue=True, may_wait=False, waited_ms=waited_ms))
                except RateHeld as held:
                    waiter.refused(held, loop.time())
                    if not (held.scope or "").startswith(_OWN):
                        # a scope the others share is full: this round is over, and those
                        # not asked yet wait as long (their turns keep their order)
                        for other in self._order.turns():
                            other.retry_at = max(other.retry_at, waiter.retry_at)
                        break
                    continue
                except Exception as exc:  # the call's own answer: raised by its request
                    self._answer(waiter, exc)
                    continue
                reservation = replace(reservation, queued_ms=max(1, waited_ms))
                if not self._answer(waiter, reservation):
                    await _void(store, reservation)
                    continue
                self._order.served(waiter.agent, waiter)
            soonest = min((w.retry_at for w in self._order.turns() if not w.answer.done()),
                          default=loop.time() + POLL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       max(MIN_PAUSE_S, soonest - loop.time()))

    @staticmethod
    def _answer(waiter: _Waiter, answer: Answer) -> bool:
        if waiter.answer.done():
            return False
        waiter.answer.set_result(answer)
        return True


async def _void(store: StateStore, reservation: Reservation) -> None:
    """A reservation made for a call that left meanwhile: released, never sent."""
    with contextlib.suppress(StateError):
        await store.settle(Outcome(reservation.id, 0, settled="void"))
