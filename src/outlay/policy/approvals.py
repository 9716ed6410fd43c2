"""What a human approved, and whether a call that presents the approval is that call.

An approval is opened for one refused call. It records the breaches that refused it (scope
and code), the most the call may cost, and the request itself: method, path, vendor, model
and a SHA-256 of the body. A call carrying `X-Outlay-Approval` is let through only when the
approval is approved, unused and unexpired, was opened for the call's key, names the same
request, and the call may cost no more than was approved; `decide` then lets exactly those
breaches through (its `grant`), and the store marks the approval used in the same atomic
step. Anything else is refused with 403 `approval_mismatch`, saying what differs.

Pure: the stores read the record and write its use; this only judges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from outlay.policy.decision import Breach, Call, Grant
from outlay.policy.errors import ApprovalMismatch
from outlay.policy.money import micros_to_usd
from outlay.policy.periods import iso
from outlay.values import value

APPROVAL_HEADER = "X-Outlay-Approval"
# the states an approval is stored in; `expired` is read from its expiry, never stored
STATES = ("pending", "approved", "denied", "used", "expired")


@value
class RequestShape:
    """What identifies a request beyond its vendor and model: how and where it is sent, and
    what it says. The body is hashed only when an approval is opened or judged, not on
    every call."""

    method: str
    path: str
    body: bytes = field(repr=False)

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def request_shape(method: str, path: str, body: bytes) -> RequestShape:
    return RequestShape(method.upper(), path, body)


@value
class Approved:
    """The request an approval was opened for, as recorded: method, path, body hash."""

    method: str
    path: str
    body_sha256: str


@dataclass(frozen=True)
class Approval:
    """An approval as stored: for whom, for what, and where it stands."""

    id: str
    key_id: str
    state: str  # pending | approved | denied | used
    breaches: tuple[Breach, ...]
    max_micros: int  # the most the approved call may cost
    vendor: str | None
    model: str | None
    request: Approved | None  # None: opened before requests were recorded
    expires_ms: int | None
    used_by: str | None = None

    def state_at(self, now_ms: int) -> str:
        """The state, or `expired` for an undecided or unused approval past its expiry."""
        if (self.state in ("pending", "approved") and self.expires_ms is not None
                and now_ms >= self.expires_ms):
            return "expired"
        return self.state

    def differences(self, call: Call, shape: RequestShape | None) -> list[str]:
        """What of the call is not what was approved, in the order a person reads a request."""
        # the gateway gives every call its shape: an approval without one (opened before
        # shapes were recorded) matches none of them
        mine = self.request
        differs = []
        if (mine and mine.method) != (shape and shape.method):
            differs.append("method")
        if (mine and mine.path) != (shape and shape.path):
            differs.append("path")
        if call.vendor != self.vendor:
            differs.append("vendor")
        if call.model != self.model:
            differs.append("model")
        if (mine and mine.body_sha256) != (shape and shape.body_sha256):
            differs.append("body")
        if call.cost_micros is None or call.cost_micros > self.max_micros:
            differs.append("amount")
        return differs

    def describe(self) -> str:
        """The approved call in a few words: `POST /v1/charges on stripe costing at most $1`."""
        where = "an unrecorded request" if self.request is None else (
            f"{self.request.method} {self.request.path}")
        model = f" with model {self.model}" if self.model else ""
        return (f"{where} on {self.vendor}{model} costing at most "
                f"${micros_to_usd(self.max_micros)}")


def judge(
    approval: Approval | None, approval_id: str, key_id: str, call: Call,
    shape: RequestShape | None, now_ms: int,
) -> Grant | ApprovalMismatch | None:
    """What the approval a call presents does for it: a Grant (approved, and for this very
    call), None (still pending, for this very call: decided like any call, and a breach
    reuses the approval), or the refusal saying why it cannot serve."""
    if approval is None:
        return _mismatch(approval_id, None, ["approval"],
                         f"No approval {approval_id} exists.")
    if approval.key_id != key_id:
        return _mismatch(approval_id, None, ["key"],
                         f"Approval {approval_id} was opened for another key.")
    state = approval.state_at(now_ms)
    if state == "denied":
        return _mismatch(approval_id, state, ["state"], f"Approval {approval_id} was denied.")
    if state == "used":
        return _mismatch(approval_id, state, ["state"],
                         f"Approval {approval_id} was already used by {approval.used_by}; "
                         "an approval lets one call through.")
    if state == "expired":
        expired = iso(approval.expires_ms or 0)
        return _mismatch(approval_id, state, ["state"],
                         f"Approval {approval_id} expired at {expired}.")
    differs = approval.differences(call, shape)
    if differs:
        dearer = ""
        if "amount" in differs and call.cost_micros is not None:
            dearer = f" (it may cost up to ${micros_to_usd(call.cost_micros)})"
        return _mismatch(approval_id, state, differs,
                         f"Approval {approval_id} is for one {approval.describe()}; this "
                         f"call differs in {', '.join(differs)}{dearer}.")
    if state == "pending":
        return None
    return Grant(approval.id, frozenset(approval.breaches))


def uncovered(grant: Grant, breaches: Sequence[Breach]) -> ApprovalMismatch:
    """The refusal of a call whose approval does not cover every breach it makes."""
    allowed = ", ".join(f"{code} on {scope}" for scope, code in sorted(grant.breaches))
    extra = ", ".join(f"{code} on {scope}" for scope, code in breaches)
    return ApprovalMismatch(
        f"Approval {grant.approval_id} lets through {allowed or 'no breach'} only; this call "
        f"also breaches {extra}. Send it without {APPROVAL_HEADER} to ask for another "
        "approval.",
        approval_id=grant.approval_id, state="approved", differs=["breaches"],
        breaches=[{"scope": scope, "code": code} for scope, code in breaches])


def _mismatch(approval_id: str, state: str | None, differs: list[str],
              message: str) -> ApprovalMismatch:
    return ApprovalMismatch(message, approval_id=approval_id, state=state, differs=differs)
