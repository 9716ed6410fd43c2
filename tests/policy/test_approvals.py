"""Approvals as values: whether a call is the approved call, and what `decide`
lets through with a grant (exactly the approved breaches, nothing else)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from outlay.policy.approvals import (
    Approval,
    Approved,
    judge,
    request_shape,
)
from outlay.policy.decide import decide
from outlay.policy.decision import Call, Counter, Grant
from outlay.policy.errors import ApprovalMismatch, BudgetExceeded, RateLimited

from .test_decide import DAY_START, KEY, NOW, admitted, full_window, refused, views

APPROVAL_ID = "apr_0123456789abcdef"
PAY = Call("stripe", cost_micros=200_000)
SHAPE = request_shape("post", "/v1/payment_intents", b"amount=20&currency=usd")
APPROVED = Approval(
    APPROVAL_ID, KEY.id, "approved", (("agent:bot", "budget_exceeded"),), 200_000, "stripe",
    None, Approved(SHAPE.method, SHAPE.path, SHAPE.body_sha256), expires_ms=NOW + 3_600_000)


def test_an_approved_approval_grants_its_breaches_to_the_very_call() -> None:
    verdict = judge(APPROVED, APPROVAL_ID, KEY.id, PAY, SHAPE, NOW)
    assert verdict == Grant(APPROVAL_ID, frozenset({("agent:bot", "budget_exceeded")}))
    cheaper = replace(PAY, cost_micros=100_000)  # at most the approved amount
    assert isinstance(judge(APPROVED, APPROVAL_ID, KEY.id, cheaper, SHAPE, NOW), Grant)


def mismatch(verdict: object) -> ApprovalMismatch:
    assert isinstance(verdict, ApprovalMismatch), verdict
    assert (verdict.status, verdict.code) == (403, "approval_mismatch")
    return verdict


def test_a_dearer_call_with_another_body_differs_in_body_and_amount() -> None:
    big = replace(PAY, cost_micros=5_000_000_000)
    shape = request_shape("POST", "/v1/payment_intents", b"amount=500000&currency=usd")
    error = mismatch(judge(APPROVED, APPROVAL_ID, KEY.id, big, shape, NOW))
    assert error.details["differs"] == ["body", "amount"]
    assert error.details["approval_id"] == APPROVAL_ID
    assert "$0.2" in error.message
    assert "$5000" in error.message


def test_every_part_of_the_request_is_compared() -> None:
    other = replace(PAY, vendor="resend", model="m")
    shape = request_shape("GET", "/v1/charges", b"")
    error = mismatch(judge(APPROVED, APPROVAL_ID, KEY.id, other, shape, NOW))
    assert error.details["differs"] == ["method", "path", "vendor", "model", "body"]
    unpriced = replace(PAY, cost_micros=None)
    assert mismatch(judge(APPROVED, APPROVAL_ID, KEY.id, unpriced, SHAPE, NOW)).details[
        "differs"] == ["amount"]
    unrecorded = replace(APPROVED, request=None)  # opened before requests were recorded
    assert mismatch(judge(unrecorded, APPROVAL_ID, KEY.id, PAY, SHAPE, NOW)).details[
        "differs"] == ["method", "path", "body"]


@pytest.mark.parametrize(("approval", "differs", "state", "words"), [
    (None, ["approval"], None, "No approval"),
    (replace(APPROVED, key_id="key_other"), ["key"], None, "another key"),
    (replace(APPROVED, state="denied"), ["state"], "denied", "denied"),
    (replace(APPROVED, state="used", used_by="req_1"), ["state"], "used", "req_1"),
    (replace(APPROVED, expires_ms=NOW), ["state"], "expired", "expired at"),
    (replace(APPROVED, state="pending", expires_ms=NOW - 1), ["state"], "expired", "expired"),
])
def test_an_approval_that_cannot_serve_says_why(
        approval: Approval | None, differs: list[str], state: str | None, words: str) -> None:
    error = mismatch(judge(approval, APPROVAL_ID, KEY.id, PAY, SHAPE, NOW))
    assert (error.details["differs"], error.details["state"]) == (differs, state)
    assert words in error.message


def test_the_body_is_hashed_as_sent() -> None:
    assert SHAPE.body_sha256 == hashlib.sha256(b"amount=20&currency=usd").hexdigest()
    assert SHAPE.method == "POST"  # methods compare as upper case


def test_a_pending_approval_for_the_same_call_is_no_grant_but_no_refusal() -> None:
    pending = replace(APPROVED, state="pending")
    assert judge(pending, APPROVAL_ID, KEY.id, PAY, SHAPE, NOW) is None
    other = request_shape("POST", "/v1/payment_intents", b"amount=21&currency=usd")
    assert mismatch(judge(pending, APPROVAL_ID, KEY.id, PAY, other, NOW)).details[
        "differs"] == ["body"]


# -- decide with a grant --------------------------------------------------------------------

HELD_BUDGET = {"on_breach": "require_approval", "rpm": 1,
               "budgets": [{"usd": 1, "period": "day", "mode": "hard"}]}
SPENT = {"agent:bot": {"day": Counter(DAY_START, 900_000, 0)}}
FULL = {"agent:bot": {"rpm": full_window("rpm", 1)}}
BUDGET_GRANT = Grant(APPROVAL_ID, frozenset({("agent:bot", "budget_exceeded")}))
RATE_GRANT = Grant(APPROVAL_ID, frozenset({("agent:bot", "rate_limit_exceeded")}))


def test_an_approval_is_opened_for_every_breach_a_human_must_approve() -> None:
    decision = decide(PAY, KEY, views({"agent:bot": HELD_BUDGET}, counters=SPENT,
                                      windows=FULL), NOW)
    refused(decision, RateLimited, "rate_limit_exceeded")
    assert decision.approval is not None  # type: ignore[union-attr]
    assert decision.approval.breaches == (  # type: ignore[union-attr]
        ("agent:bot", "rate_limit_exceeded"), ("agent:bot", "budget_exceeded"))


def test_a_grant_lets_through_its_breach_and_marks_the_approval_used() -> None:
    decision = admitted(decide(PAY, KEY, views({"agent:bot": HELD_BUDGET}, counters=SPENT),
                               NOW, grant=BUDGET_GRANT))
    assert decision.overage
    assert decision.approved
    nothing = admitted(decide(replace(PAY, cost_micros=1), KEY, views(
        {"agent:bot": HELD_BUDGET}, counters=SPENT), NOW, grant=BUDGET_GRANT))
    assert not nothing.approved  # no breach: the approval is left for the call it is for


def test_a_rate_grant_does_not_clear_a_budget_breach() -> None:
    decision = decide(PAY, KEY, views({"agent:bot": HELD_BUDGET}, counters=SPENT,
                                      windows=FULL), NOW, grant=RATE_GRANT)
    error = refused(decision, ApprovalMismatch, "approval_mismatch")
    assert error.details["differs"] == ["breaches"]
    assert error.details["breaches"] == [{"scope": "agent:bot", "code": "budget_exceeded"}]
    assert decision.approval is None  # type: ignore[union-attr]  # nothing new is opened


def test_a_grant_never_lets_a_blocking_breach_through() -> None:
    policies = {"agent:bot": HELD_BUDGET,
                "global": {"budgets": [{"usd": 0.1, "period": "day", "mode": "hard"}]}}
    decision = decide(PAY, KEY, views(policies, counters=SPENT), NOW, grant=BUDGET_GRANT)
    assert refused(decision, BudgetExceeded, "budget_exceeded").details["scope"] == "global"
