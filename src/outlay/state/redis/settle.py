"""Settling a reservation on the replicated backend: one Lua script (`lua/settle.lua`)
applies the actual cost exactly once and returns the ledger entry and the spend of the
budgets to watch. An answered LLM call's settlement goes out with the loop turn's scripts
without being awaited; a settlement that meets an unreachable Redis, or a state being
rebuilt, is kept and applied again until it lands (state/retries.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from outlay.policy.decision import Event, KeyInfo
from outlay.policy.model import Policy
from outlay.policy.tags import resolve
from outlay.state.announcements import settlement_events
from outlay.state.base import Outcome, RetryCounts, Settled, StateError
from outlay.state.redis.batch import ScriptBatch
from outlay.state.redis.plan import Names
from outlay.state.redis.wal import Wal, settle_entry
from outlay.state.retries import SettlementRetries

log = logging.getLogger("outlay.state")


class RedisSettlement:
    if TYPE_CHECKING:
        names: Names
        worker: str
        clock: Callable[[], int]
        _batch: ScriptBatch | None
        _policies: dict[str, Policy]
        _retries: SettlementRetries
        _settling: set[asyncio.Future[Any]]
        _rebuild_asked: asyncio.Task[None] | None
        _settle_script: Any
        _forward_script: Any

        @property
        def wal(self) -> Wal: ...

        def _call(self, script: Any, keys: list[str], args: list[Any]) -> Awaitable[Any]: ...

        async def _announce(self, events: Iterable[Event], now: int) -> None: ...

        def exposure_extras(self, result: Any) -> tuple[Any, int]: ...

        async def _ensure_ready(self, *, wait: bool = True) -> None: ...

    async def forwarding(self, reservation_id: str) -> bool:
        """Mark the reservation forwarded, just before its call is sent: a worker that dies
        before this leaves a call that was never sent, which its settlement by the reaper
        voids rather than charges. False when the reservation is no longer held (reaped):
        the call must not be sent."""
        marked = await self._call(self._forward_script,
                                  [self.names.reservation(reservation_id)], [])
        return bool(int(marked))

    async def settle(self, outcome: Outcome) -> bool:
        """Apply the actual cost once; False if the reservation was already settled or reaped."""
        try:
            return await self._apply_settlement(outcome)
        except StateError:
            # Redis is away: settle again when it is back (if the reply alone was lost, the
            # script then finds the record gone and nothing is applied twice)
            self._retries.keep(outcome)
            raise

    def settlement_retries(self) -> RetryCounts:
        return self._retries.counts()

    async def _apply_settlement(self, outcome: Outcome) -> bool:
        return await self._applied(outcome) is not None

    async def _applied(self, outcome: Outcome, *, keep: bool = True, reaped: bool = False
                       ) -> Settled | None:
        """Apply once: the settlement applied, or None when the reservation is no longer
        held. The reaper's (`reaped`, an `unsettled` outcome) is `void` for a call its worker
        never marked forwarded. On a state being rebuilt the outcome is kept to apply again
        (`keep`), or else (the reaper's, whose judgement was of a state that is no more)
        dropped: None then too."""
        keys, args = self._settle_call(outcome)
        if reaped:
            args[1] = "reaped"
        result = await self._call(self._settle_script, keys, args)
        settled, events = self._after_settle(outcome, result, keep=keep)
        if events:
            await self._announce(events, self.clock())
        return settled

    def queue_settlement(self, outcome: Outcome) -> bool:
        # goes with this loop turn's scripts; what follows the reply runs as it arrives
        if self._batch is None:
            return False
        future = self._batch.submit(self._settle_script, *self._settle_call(outcome))
        self._settling.add(future)
        future.add_done_callback(lambda done: self._queued_settled(outcome, done))
        return True

    def _ask_rebuild(self) -> None:
        """Rebuild the state now (in the background: a callback may ask), unless asked."""
        if self._rebuild_asked is None or self._rebuild_asked.done():
            self._rebuild_asked = asyncio.ensure_future(self._rebuild_quietly())

    async def _rebuild_quietly(self) -> None:
        with contextlib.suppress(StateError):  # another worker rebuilds it, or Redis is away
            await self._ensure_ready(wait=False)

    def _queued_settled(self, outcome: Outcome, done: asyncio.Future[Any]) -> None:
        self._settling.discard(done)
        if done.cancelled() or done.exception() is not None:
            self._retries.keep(outcome)  # applied again until it lands
            return
        try:
            _, events = self._after_settle(outcome, done.result(), queued=True)
        except Exception:  # a bug must not be lost in a callback
            log.exception("settling %s failed after the script", outcome.reservation_id)
            return
        if events:  # budget warnings: rare, coalesced
            task = asyncio.ensure_future(self._announce(events, self.clock()))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settled_so_far(self) -> None:
        """Wait for the settlements queued by this worker (before a read, or closing); at
        most 5 s a step if Redis does not answer (they are then kept, to apply again)."""
        for _ in range(2):  # the scripts' replies, then the events some of them raised
            pending = [f for f in self._settling if not f.done()]
            if not pending:
                break
            await asyncio.wait(pending, timeout=5.0)
            await asyncio.sleep(0)  # their callbacks run

    def _settle_call(self, outcome: Outcome) -> tuple[list[str], list[Any]]:
        names = self.names
        # int(): the script passes the figures on as the text they come as, which must be
        # an integer's (HINCRBY's, the ledger's) whatever number a caller computed
        return ([names.reservation(outcome.reservation_id), names.leases,
                 names.wal(self.worker), names.meta],
                [outcome.reservation_id, outcome.settled, int(outcome.cost_micros),
                 int(outcome.tokens), outcome.status or "", outcome.model or ""])

    def _after_settle(self, outcome: Outcome, result: Any, *, keep: bool = True,
                      queued: bool = False) -> tuple[Settled | None, list[Event]]:
        """Keep the settlement's ledger entry; the settlement applied (None if none) and
        the events its spend raises. `queued`: an answered call's (queue_settlement), whose
        reservation a reply to this worker brought, if this worker made it. On a state that
        must be rebuilt (a restarted Redis) the one place that decides what follows: the
        outcome kept, to apply when its record comes back with the rebuilt state (counted as
        applied), and the rebuild asked for at once rather than at the next heartbeat."""
        result = self.exposure_extras(result)[0]  # a call on a vendor object: its part
        if result[0] == -1:
            if keep:
                self._retries.keep(outcome)
            self._ask_rebuild()
            return (outcome.settled if keep else None), []
        if result[0] == 0:
            return None, []
        cost, used, entry, rec_text, row, overage, spent, cap, mode = result[1:10]
        applied: Settled = "void" if mode == "void" else outcome.settled
        rec = orjson.loads(rec_text)
        if queued and rec["worker"] == self.worker:
            # the row's own entry is kept ahead of this one in this worker's memory (its
            # reservation's reply kept it, before the call could be answered), or written:
            # the settlement alone, not its row again (the stream's entry carries it, for
            # a worker that drains the stream in another order)
            self.wal.keep(entry, [settle_entry(
                outcome.reservation_id, outcome.status or None, cost, applied, outcome.model,
                rec["amount"], used)])
        else:
            self.wal.add(entry, {
                "k": "s", "row": row, "ov": overage, "sp": spent, "cap": cap,
                "mode": applied, "cost": cost, "tokens": used,
                "status": str(outcome.status or ""), "model": outcome.model or "",
                "reserved": rec["amount"]})
        events: list[Event] = []
        over = int(cost) - int(rec["amount"])
        # on an overrun the script returns the spent of every hold, so that a hard budget
        # it crossed is announced; else of the watched ones (that warn, or are soft)
        watched = ([self.names.counter_of(hold[0]) for hold in rec["holds"]] if over > 0
                   else rec["watched"])
        if int(cost) and watched:
            key = KeyInfo(rec["key_id"], rec["agent"], None, {})
            for (scope, period, start), now_spent in zip(watched, result[10:], strict=True):
                policy = resolve((scope,), self._policies).get(scope)
                if policy is not None:
                    events += settlement_events(
                        scope, policy, period, int(start), int(now_spent), key,
                        (outcome.reservation_id, over) if over > 0 else None)
        return applied, events
