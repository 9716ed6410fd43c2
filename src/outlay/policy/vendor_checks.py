"""Least privilege on a vendor call: every scope whose policy lists the vendor under
`operations`, `accounts` or `destinations` must allow the call (the tightest of all scopes
applies). Pure: part of `decide`'s checks that depend on the policies alone."""

from __future__ import annotations

from collections.abc import Sequence

from outlay.policy.decision import Call, Refuse, ScopeView
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
