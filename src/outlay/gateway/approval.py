"""Reserving with `on_breach: require_approval`: a call held up to the policy's
approval_wait_s while a human decides, then let through once if approved."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from outlay.gateway.context import Gateway
from outlay.policy.errors import ApprovalRequired
from outlay.state.base import Reservation, Ticket

POLL_S = 0.1


async def reserve(gw: Gateway, ticket: Ticket, new_request_id: str) -> Reservation:
    """The store's reserve, holding an approval_required refusal for its wait."""
    try:
        return await gw.store.reserve(ticket)
    except ApprovalRequired as err:
        if err.wait_s <= 0:
            raise
        approval_id = str(err.details["approval_id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + err.wait_s
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(POLL_S, left))
            state = (await gw.store.get_approval(approval_id))["state"]
            if state == "approved":
                # the refusal's ledger row keeps the first request id; the pass gets its own
                return await gw.store.reserve(
                    replace(ticket, request_id=new_request_id, approval_id=approval_id))
            if state != "pending":
                raise ApprovalRequired(
                    f"Approval {approval_id} was {state}; the call was not made.", 0,
                    approval_id=approval_id, decision=state) from None
        raise
