"""Least privilege on a vendor call: every scope whose policy lists the vendor under
`operations`, `accounts` or `destinations` must allow the call (the tightest of all scopes
applies); and money out (refunds, transfers, payouts) is refused under hard spend budgets
that no money-out budget stands beside. Pure: part of `decide`'s checks that depend on the
policies alone."""

from __future__ import annotations

from collections.abc import Sequence

from outlay.policy.decision import Call, Refuse, ScopeView
from outlay.policy.errors import NotAllowed
from outlay.policy.vendor_access import (
    destination_allowed,
    listed,
    not_allowed_account,
    not_allowed_destination,
    not_allowed_operation,
    operation_allowed,
)


def vendor_refusal(call: Call, views: Sequence[ScopeView]) -> Refuse | None:
    """The refusal of a vendor call some scope does not allow; None when all allow it."""
    if call.operation is None:
        return None
    vendor = call.vendor
    method, path = call.operation
    for view in views:  # operations first: a call not allowed at all says so
        policy = view.policy
        allowed = None if policy is None else listed(policy.operations, vendor)
        if allowed is not None and not operation_allowed(allowed, method, path):
            return Refuse(not_allowed_operation(vendor, method, path, allowed, view.scope),
                          view.scope)
    if call.accounts:
        listing = False
        for view in views:
            policy = view.policy
            allowed = None if policy is None else listed(policy.accounts, vendor)
            if allowed is None:
                continue
            listing = True
            for account in call.accounts:
                if account not in allowed:
                    return Refuse(not_allowed_account(vendor, account, allowed, view.scope),
                                  view.scope)
        if not listing and not call.any_account:
            return Refuse(not_allowed_account(vendor, call.accounts[0], None, None), None)
    for view in views:
        policy = view.policy
        allowed = None if policy is None else listed(policy.destinations, vendor)
        if allowed is None:
            continue
        for destination in call.destinations:
            if not destination_allowed(allowed, destination):
                return Refuse(not_allowed_destination(vendor, destination, allowed, view.scope),
                              view.scope)
    return None


def uncapped_money_out(call: Call, views: Sequence[ScopeView]) -> Refuse | None:
    """The refusal of a call moving money out when a scope of the call caps spend with a
    hard budget but no scope has a money-out budget (`flow: out`): an operator who capped
    spend meant money to be capped, and before money-out budgets existed such calls were
    refused as unpriced. With no hard budget anywhere the call goes on (counted as money
    out); any money-out budget, whatever its mode, is the operator's say on money out."""
    if call.flow != "out" or any(
            b.flow == "out" for v in views if v.policy for b in v.policy.budgets):
        return None
    capped = next((v.scope for v in views if v.policy and any(
        b.mode == "hard" and b.flow == "spend" and not v.policy.shadows(b)
        for b in v.policy.budgets)), None)
    if capped is None:
        return None
    return Refuse(NotAllowed(
        "money_out_not_capped",
        f"{capped} caps spend with a hard budget, but no scope of this call caps money moved "
        "out (refunds, transfers, payouts), so Outlay refuses to move any. An operator can "
        "add a money-out budget beside the spend budgets, e.g. {usd: 50, period: day, "
        "flow: out} (`--budget out:50/day` on the command line).",
        vendor=call.vendor, scope=capped, flow="out"), capped)
