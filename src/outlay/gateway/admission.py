"""Admitting an agent request, shared by the LLM and vendor routes: recording a request
refused before any policy was consulted, and the one store call that decides and reserves,
asked again while calls in flight may free room for it (`hold_wait_ms`, gateway/holds.py),
and held while a human decides when the policy says `on_breach: require_approval`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from random import getrandbits

from outlay.gateway.context import Gateway
from outlay.gateway.holds import Wait
from outlay.policy.decision import Call
from outlay.policy.errors import (
    ApprovalRequired,
    BudgetHeld,
    DowngradeAsked,
    OutlayError,
    RateHeld,
    RateLimited,
    Unavailable,
)
from outlay.policy.loop_check import LOOP_CODE
from outlay.policy.tags import merged
from outlay.state.base import NotFound, Outcome, Reservation, StateError, Ticket
from outlay.state.exposure import ExposureClaim
from outlay.telemetry.spans import CURRENT, noted_admission, noted_decision

APPROVAL_POLL_S = 0.1


def new_request_id() -> str:
    """req_ and 24 hex digits: the time in ms (48 bits), then 48 random bits. Ids sort by
    time, as UUIDv7 and ULID do, so each new ledger row and reservation lands at the end of
    its index instead of on a random page of it."""
    # ids are not secrets: random's generator (reseeded in a forked worker) is a tenth of
    # the cost of os.urandom's system call
    return f"req_{time.time_ns() // 1_000_000:012x}{getrandbits(48):012x}"


def unavailable(gw: Gateway, exc: StateError) -> Unavailable:
    gw.outages.warn(f"answering 503 enforcement_unavailable: {exc}")
    return Unavailable(
        "enforcement_unavailable",
        f"Outlay cannot reach its state store, so it refuses calls rather than let them "
        f"through unchecked: {exc}",
    )


async def refuse_invalid(gw: Gateway, ticket: Ticket, error: OutlayError) -> OutlayError:
    """A request refused for its own shape: recorded in the ledger; the error to answer."""
    try:
        await gw.store.record_refusal(ticket, error.status, error.code)
    except StateError as exc:
        error = unavailable(gw, exc)
    _count(gw, ticket, "invalid", error.code, error.status)
    return error


# prices an LLM call on other models (on_exceeded.downgrade_to): model -> the call on it
Reprice = Callable[[tuple[str, ...]], Mapping[str, Call]]
Gone = Callable[[], bool]  # whether the call's client hung up


async def admit(gw: Gateway, ticket: Ticket, claim: ExposureClaim | None = None,
                reprice: Reprice | None = None, gone: Gone | None = None
                ) -> Reservation | OutlayError:
    """The reservation, or the refusal to answer with; a call on a vendor object (`claim`)
    raises ObjectMoved when it must be priced again. A budget that would send the call to a
    cheaper model has it priced there by `reprice` (none: it is refused). A call its
    policies queue waits in the gateway's queue while `gone()` (its client hung up) is
    not true."""
    try:
        try:
            reservation = await _reserve(gw, ticket, claim, gone)
        except DowngradeAsked as asked:
            # nothing was written: decided again with the cheaper models priced
            ticket = replace(ticket, downgrades=dict(reprice(asked.models)) if reprice else {})
            reservation = await _reserve(gw, ticket, claim, gone)
    except OutlayError as err:
        _count(gw, ticket, "refused", err.code, err.status)
        if err.code == LOOP_CODE and err.details.get("on_loop") == "revoke":
            await _revoke_looping(gw, ticket)
        return err
    except StateError as exc:
        refusal = unavailable(gw, exc)
        _count(gw, ticket, "refused", refusal.code, refusal.status)
        return refusal
    # a breach only reported (enforce: shadow) is counted with the refusal it would have been
    _count(gw, ticket, "allowed",
           f"shadow_{reservation.shadowed[0]}" if reservation.shadowed
           else "downgraded" if reservation.downgraded_to else "")
    if CURRENT.get() is not None:
        key = reservation.key
        noted_admission(key.agent, merged(ticket.tags, key.labels), reservation.downgraded_to)
    return reservation


async def refuse_unread(gw: Gateway, ticket: Ticket) -> OutlayError | None:
    """The refusal of a call whose key the head already shows refused (gw.keys), its body
    unread. The store decides it as any call, without what the body would have told, so
    its ledger row, counts and events are those of every refusal. None if the store admits
    it after all, which a store whose refused keys stay refused never does: that admission
    is voided, and the caller decides the call again with its body."""
    answer = await admit(gw, ticket)
    if not isinstance(answer, Reservation):
        return answer
    # it holds nothing: should the store fail now, the reaper charges it in full, nothing
    with contextlib.suppress(StateError):
        await gw.store.settle(Outcome(answer.id, 0, settled="void"))
    return None


async def cleared_to_send(gw: Gateway, reservation: Reservation) -> OutlayError | None:
    """Mark the reservation forwarded, just before its call is sent: a call whose worker
    dies before this was never sent, and is voided rather than charged. The refusal to
    answer instead when the store cannot mark it (unreachable: the call is voided, as any
    answered 503) or no longer holds it (reaped meanwhile: it must not be sent). A
    reservation of nothing needs no mark."""
    if gw.pause_before_forward_s:
        await asyncio.sleep(gw.pause_before_forward_s)
    if not reservation.amount:
        return None
    try:
        if await gw.store.forwarding(reservation.id):
            return None
    except StateError as exc:
        with contextlib.suppress(StateError):  # kept by the store, voided once it is back
            await gw.store.settle(Outcome(reservation.id, 503, settled="void"))
        return unavailable(gw, exc)
    return Unavailable("enforcement_unavailable", "The reservation of this call was released "
                       "before it was sent (this worker was taken for dead); it was not sent.")


async def _revoke_looping(gw: Gateway, ticket: Ticket) -> None:
    """A key whose loop guard says `on_loop: revoke`, revoked as the admin API would (its
    streams cut, `key.revoked` announced). Should the store fail now, the refusal stands and
    the loop's next call, refused again, revokes it."""
    if ticket.key_hash is None:
        return
    try:
        key = await gw.store.key_by_hash(ticket.key_hash)
        if key is None or key.revoked:
            return
        await gw.store.revoke_key(key.id)
    except (StateError, NotFound) as exc:
        gw.outages.warn(f"could not revoke a looping key: {exc}")
        return
    gw.streams.cut(key.id)


def _count(gw: Gateway, ticket: Ticket, decision: str, code: str,
           status: int | None = None) -> None:
    vendor = gw.vendor_label(ticket.call.vendor)
    route = ticket.route if vendor == ticket.call.vendor else f"vendor.{vendor}"
    gw.metrics.decided(route, vendor, decision, code)
    if CURRENT.get() is None:
        return  # no span: telemetry is off
    noted_decision(ticket.request_id, ticket.call.model, decision, code, status)
    if status is not None and (key := gw.keys.kept(ticket.key_hash)) is not None:
        # a refused call's agent, as its key was read in the head
        noted_admission(key.agent, merged(ticket.tags, key.labels), None)


async def _reserve(gw: Gateway, ticket: Ticket, claim: ExposureClaim | None,
                   gone: Gone | None = None) -> Reservation:
    """The store's reserve, holding an approval_required refusal for its wait."""
    try:
        return await _reserve_or_hold(gw, ticket, claim, gone)
    except ApprovalRequired as err:
        if err.wait_s <= 0:
            raise
        approval_id = str(err.details["approval_id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + err.wait_s
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(APPROVAL_POLL_S, left))
            state = (await gw.store.get_approval(approval_id))["state"]
            if state == "approved":
                # the refusal's ledger row keeps the first request id; the pass gets its own
                return await _reserve_or_hold(gw, replace(
                    ticket, request_id=new_request_id(), approval_id=approval_id), claim)
            if state != "pending":
                raise ApprovalRequired(
                    f"Approval {approval_id} was {state}; the call was not made.", 0,
                    approval_id=approval_id, decision=state) from None
        raise


async def _reserve_or_hold(gw: Gateway, ticket: Ticket, claim: ExposureClaim | None,
                           gone: Gone | None = None) -> Reservation:
    """The store's reserve, asked again while the call waits for calls in flight to settle
    (BudgetHeld), then once more without waiting; or, a rate refusal its policies queue
    (RateHeld), waiting in the gateway's queue for room. The wait holds nothing: no lock,
    no money, no ledger row until the call is decided (its row then says how long it
    waited)."""
    wait: Wait | None = None
    outcome = "refused"
    queued_ms = 0
    try:
        while True:
            try:
                reservation = await (gw.store.reserve(ticket) if claim is None
                                     else gw.store.reserve_exposure(ticket, claim))
            except BudgetHeld as held:
                if wait is None:
                    if not gw.holds.enter():  # too many wait already: decided now
                        ticket = replace(ticket, may_wait=False)
                        continue
                    wait = Wait.of(held.wait_ms)
                pause = wait.next_poll()
                if pause:
                    await gw.holds.wait(pause)
                ticket = replace(ticket, may_wait=pause > 0, waited_ms=wait.waited_ms)
                continue
            except RateHeld as queued:
                since = time.monotonic()
                answer = await gw.queue.wait(gw.store, ticket, queued, queued.agent, gone)
                queued_ms = round((time.monotonic() - since) * 1000)
                gw.metrics.queued(queued_ms / 1000)
                if isinstance(answer, BaseException):
                    raise answer from None  # decided while it waited (client gone: unrecorded)
                if answer is None:  # its wait is over: decided now, as it would have been
                    ticket = replace(ticket, may_queue=False, waited_ms=queued_ms)
                    continue
                reservation = answer
            outcome = "admitted"
            return reservation
    except RateLimited as refused:
        refused.queued_ms = queued_ms
        raise
    finally:
        if wait is not None:
            gw.holds.leave()
            gw.metrics.held(outcome, wait.waited_ms / 1000)
