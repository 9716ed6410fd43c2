"""The embedded state backend: one SQLite file, shared safely by worker processes on a host.

Every decision is made inside a `BEGIN IMMEDIATE` transaction (SQLite's write lock
serialises the workers), so checks and the reservation can never interleave with another
request's. The decisions of one event-loop turn share a transaction (sqlite_batch), and read
the rows they need from the worker's exact copy of them (sqlite_mirror).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeVar

import orjson

from outlay.owner_only import create_private
from outlay.policy.approvals import judge
from outlay.policy.decide import authenticate, decide
from outlay.policy.decision import Admit, Call, Decision, Event, Grant, KeyInfo, call_scopes
from outlay.policy.errors import ApprovalMismatch, BudgetExceeded, BudgetHeld, OutlayError, RateHeld
from outlay.policy.pacing import PAUSE, decide_paced, queue_wait
from outlay.policy.series import SeriesQuery, Sums
from outlay.policy.tags import is_wildcard, wildcard_of
from outlay.policy.windows import WindowState, bucket_of
from outlay.state import ledger_sql, rollups_sql
from outlay.state.announcements import settlement_events
from outlay.state.base import (
    DOWNGRADED_CODE,
    SHADOW_CODE,
    BudgetLine,
    Outcome,
    Reservation,
    RetryCounts,
    StateError,
    Ticket,
    charged,
    refusal_figures,
    unpriced,
)
from outlay.state.clock import wall_ms
from outlay.state.downgrades import downgrade
from outlay.state.retries import SettlementRetries
from outlay.state.sealing import Sealer
from outlay.state.sqlite import repeats, replays, tagged
from outlay.state.sqlite.access import AccessMixin
from outlay.state.sqlite.admin import AdminMixin
from outlay.state.sqlite.approvals import ApprovalsMixin, mark_used, open_approval, read_approval
from outlay.state.sqlite.batch import GroupCommit
from outlay.state.sqlite.checkpoint import Checkpointer
from outlay.state.sqlite.events import announce
from outlay.state.sqlite.exposure import ExposureMixin
from outlay.state.sqlite.leases import LeasesMixin
from outlay.state.sqlite.marks import MarkFiles, marks_dir
from outlay.state.sqlite.mirror import Held, Mirror
from outlay.state.sqlite.outbox import OutboxMixin
from outlay.state.sqlite.reader import Reader
from outlay.state.sqlite.schema import apply
from outlay.state.sqlite.transaction import Transaction
from outlay.state.sqlite.windows_sql import read_windows

Clock = Callable[[], int]
T = TypeVar("T")



class SqliteStore(AdminMixin, AccessMixin, ApprovalsMixin, OutboxMixin, ExposureMixin,
                  LeasesMixin):
    def __init__(
        self, path: str, *, clock: Clock = wall_ms, lease_s: float = 900.0,
        busy_timeout_s: float = 30.0, approval_ttl_s: float = 3600.0,
        sealer: Sealer | None = None,
    ) -> None:
        self.path = path or ":memory:"
        self.clock = clock
        self.lease_ms = int(lease_s * 1000)
        self.approval_ttl_ms = int(approval_ttl_s * 1000)
        self.busy_timeout_s = busy_timeout_s
        self.sealer = sealer or Sealer()  # webhook secrets: sealed when it has a key
        self.worker = f"w_{os.getpid()}_{secrets.token_hex(4)}"
        self._conn: sqlite3.Connection | None = None
        self._mirror = Mirror()
        self._tag_values = tagged.TagValues()
        self._guarded = repeats.GuardedKeys()
        self._batch = GroupCommit(self._batch_tx)
        self._retries = SettlementRetries(self._apply_settlement)
        self._checkpointer: Checkpointer | None = None
        directory = marks_dir(self.path)
        self._marks = None if directory is None else MarkFiles(directory, self.worker)
        self._unsent = {}
        self._in_file = set()
        # the long reads of reports; an in-memory database has only the one connection
        self._reader = None if self.path == ":memory:" else Reader(self.path, busy_timeout_s)

    # -- plumbing ---------------------------------------------------------------------
    async def open(self) -> None:
        if self._conn is not None:
            return
        self._conn = self._connect()
        if self.path != ":memory:":
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the thread's job instead
            self._checkpointer = Checkpointer(self.path)
            self._checkpointer.start()
        await self.heartbeat()

    def _connect(self) -> sqlite3.Connection:
        # The store works synchronously on purpose: a transaction takes tens of microseconds,
        # less than a hop to a thread pool would cost.
        try:
            if self.path != ":memory:":
                create_private(self.path)  # 0600 before SQLite opens it, and so its WAL
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None,
                check_same_thread=False,
            )
            apply(conn)
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open the SQLite state at {self.path}: {exc}") from exc
        return conn

    async def close(self) -> None:
        if self._conn is not None:
            self._batch.drain()  # the queued settlements that fail are kept
            await self._retries.close()  # one last try for those kept
            with contextlib.suppress(StateError):
                self._mirror.move_now()  # leave the settled rows in the ledger
                with self._batch_tx() as c:
                    # the calls still running: their marks
                    self._durable_marks(c, self._in_file | (self._moving or set()))
                if self._marks is not None:
                    self._marks.remove()
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("DELETE FROM workers WHERE id=?", (self.worker,))
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._reader is not None:
                self._reader.close()
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError("the state store is not open")
        return self._conn

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; driver errors become StateError. What it writes is not
        known to the mirror, so the mirror starts over after it."""
        self._mirror.drop()
        try:
            with Transaction(self, self._mirror.flush) as c:
                yield c
        finally:
            self._mirror.drop()

    def _batch_tx(self) -> Transaction:
        """The request path's transaction: the mirror is kept if nothing else wrote."""
        return Transaction(self, self._mirror.flush, self._mirror.begin)

    # -- the request path -------------------------------------------------------------
    async def reserve(self, ticket: Ticket) -> Reservation:
        digest = self._guarded.digest(ticket)  # outside the write lock, when likely needed
        reservation: Reservation = await self._batch.run(
            lambda c: self._reserve(c, ticket, digest))
        self._made(reservation.id, reservation.started_ms)
        return reservation

    def _reserve(self, c: sqlite3.Connection, ticket: Ticket, digest: bytes | None = None
                 ) -> Reservation:
        """Authenticate, decide and reserve, inside the batch's transaction. A refusal is
        recorded, then raised: the batch keeps its ledger row and answers with it."""
        now = self.clock()
        key = None if ticket.key_hash is None else self._mirror.key(c, ticket.key_hash)
        refusal: OutlayError | None = authenticate(key, now)
        if refusal is not None or key is None:
            if key is not None and refusal is not None and refusal.code == "key_expired":
                announce(c, now, [Event("key.expired", {
                    "key_id": key.id, "agent_id": key.agent, "scope": f"key:{key.id}",
                    "expired_at": refusal.details.get("expired_at"),
                }, f"key.expired:{key.id}")])
            self._refusal_row(c, ticket, key, now, refusal, None)
            raise refusal or StateError("decision lost")
        first = replays.first_call(c, ticket)
        if first is not None:
            # decided like any call (allow-lists, windows), but it holds no money: the first
            # call's scopes keep the charge
            ticket = replace(ticket, call=replace(ticket.call, cost_micros=0),
                             idempotency_key=None, replay_of=first)
        grant = self._grant(c, ticket, key, now)
        labels = ticket.labels(key)
        scopes = call_scopes(key, ticket.call.vendor, labels)
        own, in_force, rule = self._mirror.policies_in_force(c, scopes)
        views = tagged.views(self._mirror, c, scopes, in_force, now)
        loop = repeats.loop_of(self._mirror, c, ticket, key, rule, self._guarded, digest)
        slots = [tagged.slot_view(self._mirror, c, slot) for slot in ticket.endpoints]
        chosen: list[str | None] = [None]  # the endpoint the call is admitted on

        def decide_on(call: Call, may_wait: bool) -> Decision:
            decision, chosen[0] = decide_paced(lambda v: decide(
                call, key, v, now, ticket.aliases, ticket.free_models, grant, may_wait,
                labels, loop), views, slots, now, ticket.may_queue)
            return decision

        decision = decide_on(ticket.call, ticket.may_wait)
        if not isinstance(decision, Admit):  # an admission is never downgraded
            ticket, decision, _ = downgrade(ticket, key, decision,
                                            lambda call: decide_on(call, False), now)
        if isinstance(decision, Admit) and own and len(scopes) > len(key.scopes) + 2:
            values = self._tag_values.new_values(c, scopes, own, now)
            if not isinstance(values, list):  # one value too many for a `*` policy
                self._refusal_row(c, ticket, key, now, values, values.details["scope"])
                raise values
            tagged.TagValues.add(c, values)
        if not isinstance(decision, Admit) and decision.hold_ms is not None:
            # not refused yet, and nothing written: the gateway asks again when the calls in
            # flight have settled
            assert isinstance(decision.error, BudgetExceeded)
            raise BudgetHeld(decision.error, decision.hold_ms)
        if not isinstance(decision, Admit) and decision.queue_s is not None:
            raise RateHeld(decision.error, decision.queue_s, decision.scope, key.agent)
        announce(c, now, decision.events)
        if not isinstance(decision, Admit):
            refusal = decision.error
            if decision.approval is not None:
                refusal = open_approval(c, now, ticket, key, decision.approval,
                                        self.approval_ttl_ms)
            self._refusal_row(c, ticket, key, now, refusal, decision.scope)
            raise refusal
        if decision.call is not None:  # its maximum output lowered to fit
            ticket = replace(ticket, call=decision.call)
        self._write_admit(c, ticket, key, decision, now, labels)
        if loop is not None and decision.repeats is not None:
            repeats.write(self._mirror, loop, decision.repeats, now, self._guarded.prune_due())
        if grant is not None and decision.approved:
            mark_used(c, grant.approval_id, ticket.request_id, now)
        call = ticket.call
        return Reservation(ticket.request_id, key, decision.limits, call.cost_micros or 0, now,
                           call.clamped_to, ticket.replay_of, decision.shadowed,
                           call.model if ticket.downgraded_from else None, chosen[0],
                           queues=queue_wait(views) is not None)

    async def pause_endpoint(self, scope: str, until_ms: int) -> None:
        def pause(c: sqlite3.Connection) -> None:
            kept = self._mirror.windows_of(c, scope).get(PAUSE)
            if kept is None or kept.newest < until_ms:
                self._mirror.set_window(scope, PAUSE, WindowState(until_ms, ()))

        await self._batch.run(pause, always=True)

    def _grant(self, c: sqlite3.Connection, ticket: Ticket, key: KeyInfo, now: int
               ) -> Grant | None:
        """What the approval the call presents lets through; a refusal (recorded) when it is
        not for this call or can no longer be used."""
        if not ticket.approval_id:
            return None
        verdict = judge(read_approval(c, ticket.approval_id), ticket.approval_id, key.id,
                        ticket.call, ticket.shape, now)
        if isinstance(verdict, ApprovalMismatch):
            self._refusal_row(c, ticket, key, now, verdict, None)
            raise verdict
        return verdict

    def _write_admit(
        self, c: sqlite3.Connection, ticket: Ticket, key: KeyInfo, admit: Admit, now: int,
        labels: Mapping[str, str],
    ) -> None:
        call = ticket.call
        replays.register(c, ticket, key.id, now)
        limits = admit.limits
        cap = limits.budget_cap
        spent = None if cap is None or limits.budget_remaining is None else (
            cap - limits.budget_remaining)
        code = "idempotent_replay" if ticket.replay_of else unpriced(call)
        if admit.overage:  # a breach let through: by an approval, or by on_breach alert
            code = "approved_overage" if admit.approved else "alert_overage"
        elif admit.shadowed:  # a breach only reported: a refusal it would have been
            code = SHADOW_CODE
        if ticket.downgraded_from:  # sent to a cheaper model than it asked for
            code = DOWNGRADED_CODE
        # what follows only changes the mirror: nothing in it can fail half-way
        mirror = self._mirror
        tpm: list[list[Any]] = []
        for (scope, name), state in admit.windows.items():
            mirror.set_window(scope, name, state)
            if name == "tpm":
                tpm.append([scope, bucket_of("tpm", now)])
        for scope in admit.parallel_scopes:
            mirror.add_inflight(c, scope, 1)
        holds: list[list[Any]] = []
        for h in admit.holds:
            counter = h.counter
            mirror.add_counter(c, (h.scope, counter, h.period_start), 0, h.amount)
            holds.append([h.scope, counter, h.period_start, h.amount, h.watched])
        parallel = list(admit.parallel_scopes)
        amount = call.cost_micros or 0
        mirror.hold(c, ticket.request_id, (
            ticket.request_id, now, now + self.lease_ms, self.worker, amount, call.tokens,
            orjson.dumps(holds), orjson.dumps(tpm), orjson.dumps(parallel),
        ), (*ledger_sql.call_columns(ticket, key, labels), code, spent, cap, ticket.replay_of,
            ticket.waited_ms or None),
            Held(amount, call.tokens, holds, tpm, parallel, key.id, key.agent))

    def _refusal_row(
        self, c: sqlite3.Connection, ticket: Ticket, key: KeyInfo | None, now: int,
        error: OutlayError | None, scope: str | None,
    ) -> None:
        status, code = (error.status, error.code) if error else (401, "invalid_api_key")
        # the audit shows what the call may cost, and the spend, holds and cap that refused it
        figures = refusal_figures(error, ticket)
        self._mirror.ledger_row(c, ledger_sql.insert_row(
            ticket, key, now, decision="refused", code=code, scope=scope, status=status,
            reserved=0, settlement="none", spent=figures.spent, cap=figures.cap,
            held=figures.held, estimated=figures.estimated))

    async def record_refusal(self, ticket: Ticket, status: int, code: str) -> None:
        # on the request path like a decision: a flood of malformed requests costs a ledger
        # row each, not the worker's copy of its rows
        await self._batch.run(lambda c: self._record_invalid(c, ticket, status, code))

    def _record_invalid(self, c: sqlite3.Connection, ticket: Ticket, status: int,
                        code: str) -> None:
        key = None if ticket.key_hash is None else self._mirror.key(c, ticket.key_hash)
        self._mirror.ledger_row(c, ledger_sql.insert_row(
            ticket, key, self.clock(), decision="invalid", code=code, scope=None,
            status=status, reserved=0, settlement="none", spent=None, cap=None))

    async def settle(self, outcome: Outcome) -> bool:
        """Apply the actual cost once; False if the reservation was already settled or
        reaped. One the store fails to apply is kept and applied again (state/retries.py)."""
        self._done(outcome.reservation_id)
        try:
            return await self._apply_settlement(outcome)
        except StateError:
            self._retries.keep(outcome)
            raise

    async def _apply_settlement(self, outcome: Outcome) -> bool:
        settled: bool = await self._batch.run(lambda c: self._settle(c, outcome), always=True)
        return settled

    def queue_settlement(self, outcome: Outcome) -> bool:
        # shares the transaction of the next decision, usually the next call's
        self._done(outcome.reservation_id)
        queued = _QueuedSettlement(self, outcome)
        self._batch.submit(queued, queued.lost)
        return True

    def settlement_retries(self) -> RetryCounts:
        return self._retries.counts()

    def _settle(self, c: sqlite3.Connection, outcome: Outcome) -> bool:
        # taking the reservation is what makes a settlement happen once: a second settle,
        # or the reaper racing this one, finds nothing
        mirror = self._mirror
        held = mirror.held_of(c, outcome.reservation_id)
        if held is None:
            return False
        amount, tokens = held.amount, held.tokens
        cost = charged(outcome.settled, outcome.cost_micros, amount)
        if outcome.settled == "void":
            replays.forget(c, outcome.reservation_id)
        used_tokens = 0 if outcome.settled == "void" else (
            tokens if outcome.settled == "unsettled" else outcome.tokens)
        for h in held.holds:
            mirror.counter(c, (h[0], h[1], h[2]))
        for scope, _bucket in held.tpm:
            mirror.windows_of(c, scope)
        for scope in held.parallel:
            mirror.inflight_of(c, scope)
        # every row it changes is in the mirror now: what follows cannot fail half-way
        mirror.release(outcome.reservation_id, ledger_sql.settle_row(outcome, cost, amount))
        for h in held.holds:
            mirror.add_counter(c, (h[0], h[1], h[2]), cost, -h[3])
        for scope, bucket in held.tpm:
            state = mirror.windows_of(c, scope).get("tpm")
            if state is not None:
                mirror.set_window(scope, "tpm", state.adjusted(bucket, used_tokens - tokens))
        for scope in held.parallel:
            mirror.add_inflight(c, scope, -1)
        # only budgets that warn or are soft can raise an event when money is spent, and
        # hard ones when the bill passed what was held
        over = cost - amount if cost > amount else 0
        watched = held.holds if over else [h for h in held.holds if len(h) < 5 or h[4]]
        if cost and watched:
            self._settlement_events(
                c, held, watched, (outcome.reservation_id, over) if over else None)
        return True

    def _settlement_events(
        self, c: sqlite3.Connection, held: Held, held_on: list[list[Any]],
        overrun: tuple[str, int] | None,
    ) -> None:
        """Budget warnings and budget crossings, judged on what is now spent."""
        key = None if held.key_id is None else KeyInfo(held.key_id, held.agent or "", None, {})
        now = self.clock()
        mirror = self._mirror
        for scope, period, start, *_ in held_on:
            policy = tagged.policies_in_force(mirror, c, (scope,)).get(scope)
            if policy is None:
                continue
            spent = mirror.counter(c, (scope, period, start))[0]
            announce(c, now, settlement_events(scope, policy, period, start, spent, key,
                                               overrun))

    # -- reporting -----------------------------------------------------------------------
    async def usage(self, scope: str, values_limit: int = 100) -> dict[str, Any]:
        self._batch.drain()  # this worker's settlements still queued count too
        policy = await self.get_policy(scope)
        if policy is None and (wild := wildcard_of(scope)) is not None:
            policy = await self.get_policy(wild)  # a tag value under its `*` policy
        now, windows = self.clock(), self._windows_of(scope)
        return await self._read(lambda c: tagged.usage(c, scope, policy, now, windows,
                                                       values_limit))

    async def _read(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """A read that may take long, off the event loop (see sqlite_reader)."""
        if self._reader is None:
            return read(self.conn)
        return await self._reader.run(read)

    async def budgets(self) -> list[BudgetLine]:
        self._batch.drain()  # this worker's settlements still queued count too
        now = self.clock()
        lines = []
        for scope, policy in (await self.list_policies(keys=False)).items():
            if is_wildcard(scope):
                continue  # its values' budgets: see its usage
            for budget in policy.budgets:
                spent, reserved = ledger_sql.counter(
                    self.conn, scope, budget.counter,
                    ledger_sql.period_start_of(budget.period, now))
                lines.append(BudgetLine(scope, budget.period, budget.mode, budget.cap_micros,
                                        spent, reserved, budget.flow))
        return lines

    def _windows_of(self, scope: str) -> dict[str, Any]:
        return read_windows(self.conn, scope)

    async def audit(self, scope: str | None, limit: int) -> list[dict[str, Any]]:
        self._batch.drain()
        return await self._read(lambda c: ledger_sql.audit(c, scope, limit))

    async def report(self, group_by: str, since_ms: int | None) -> list[dict[str, Any]]:
        self._batch.drain()
        return await self._read(lambda c: ledger_sql.report(c, group_by, since_ms))

    async def series(self, query: SeriesQuery) -> list[Sums]:
        self._batch.drain()
        return await self._read(lambda c: rollups_sql.sqlite_series(c, query))


class _QueuedSettlement:
    """A settlement's op in a batch, and what to do if the batch loses it: one object
    rather than two closures, as every LLM call queues one."""

    __slots__ = ("outcome", "store")

    def __init__(self, store: SqliteStore, outcome: Outcome) -> None:
        self.store, self.outcome = store, outcome

    def __call__(self, c: sqlite3.Connection) -> bool:
        return self.store._settle(c, self.outcome)

    def lost(self, _error: StateError) -> None:
        self.store._retries.keep(self.outcome)



