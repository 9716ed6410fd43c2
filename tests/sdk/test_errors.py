"""SPEC §4's error table as the SDK reads it: every refusal the gateway writes, in both body
shapes, becomes its typed error with its details; anything else does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest

import outlay
from outlay.gateway.errors import error_answer
from outlay.gateway.exchange import too_slow
from outlay.policy import errors as gw
from outlay.policy.model import Policy
from outlay.policy.tags import missing_tags, too_many_values
from outlay.policy.vendor_access import (
    not_allowed_account,
    not_allowed_destination,
    not_allowed_operation,
)
from outlay.policy.windows import LIMIT_CODES
from outlay.sdk.errors import error_from_answer

RID = "req_0123456789ab0123456789ab"
RESETS = "2026-07-01T00:00:00Z"

# One refusal per line of SPEC §4's table (every rate code), as the gateway's policy layer
# builds it, and the typed error it must come back as.
REFUSALS: list[tuple[gw.OutlayError, type[outlay.OutlayError]]] = [
    (gw.AuthError("invalid_api_key", "Incorrect or unknown Outlay API key."), outlay.InvalidKey),
    (gw.AuthError("key_revoked", "The Outlay key key_1 has been revoked."), outlay.KeyRevoked),
    (gw.AuthError("key_expired", "The Outlay key key_1 expired.", expired_at=RESETS),
     outlay.KeyExpired),
    (gw.NotAllowed("model_not_allowed", "Model 'gpt-4o' is not allowed.",
                   allowed=["gpt-4o-mini", "claude-*"], scope="agent:a"), outlay.ModelNotAllowed),
    (gw.NotAllowed("vendor_not_allowed", "Vendor 'twilio' is not allowed.",
                   allowed=["stripe"], scope="agent:a"), outlay.VendorNotAllowed),
    (not_allowed_operation("stripe", "POST", "/v1/refunds", ["GET /v1/charges/*"], "agent:a"),
     outlay.OperationNotAllowed),
    (not_allowed_account("stripe", "acct_1Other", ["acct_1Mine"], "agent:a"),
     outlay.AccountNotAllowed),
    (not_allowed_destination("twilio", "+4420", ["+1*"], "agent:a"),
     outlay.DestinationNotAllowed),
    (gw.NotAllowed("money_out_not_capped", "No scope of this call caps money moved out.",
                   vendor="stripe", scope="agent:a", flow="out"), outlay.MoneyOutNotCapped),
    (gw.ApprovalRequired("A human must approve this call.", 0, approval_id="apr_42",
                         scope="agent:a", reason="budget_exceeded"), outlay.ApprovalRequired),
    (gw.ApprovalMismatch("Approval apr_42 was already used.", approval_id="apr_42",
                         state="used", differs=["state"]), outlay.OutlayError),
    *[(gw.RateLimited(code, "Rate limit reached.", scope="key:key_1", limit=7, retry_after=13,
                      window=window, window_s=60, reset_unix=1_800_000_000), outlay.RateLimited)
      for window, code in LIMIT_CODES.items()],
    (gw.RateLimited("concurrency_limit_exceeded", "Too many calls in flight.", scope="key:key_1",
                    limit=2, retry_after=1), outlay.RateLimited),
    (gw.RateLimited("loop_detected", "The same request was made 20 times within 60 s.",
                    scope="agent:a", repeats=20, max_repeats=20, window_s=60, retry_after=30,
                    on_loop="refuse"), outlay.RateLimited),
    (gw.RateLimited("provider_rate_limited", "Every openai endpoint is at its limits.",
                    provider="openai", retry_after=3), outlay.RateLimited),
    (too_many_values("customer", 100), outlay.RateLimited),
    (gw.BudgetExceeded("budget_exceeded", "Budget exceeded: $4.5 spent of a $5 hard cap today.",
                       scope="agent:a", period="day", spent_usd="4.5", cap_usd="5",
                       resets_at=RESETS), outlay.BudgetExceeded),
    (gw.BadRequest("price_unknown", "No price is known for model 'x'."), outlay.InvalidRequest),
    (gw.invalid_request("The request body is empty.", param="body"), outlay.InvalidRequest),
    (gw.TooLarge("request_too_large", "The request body is too large."), outlay.InvalidRequest),
    (too_slow(), outlay.InvalidRequest),
    (missing_tags([("agent:a", Policy(required_tags=("customer",)))], {}),
     outlay.InvalidRequest),
    (gw.Unavailable("upstream_unavailable", "No endpoint answered.", status=502),
     outlay.Unavailable),
    (gw.Unavailable("enforcement_unavailable", "The state store is unreachable."),
     outlay.Unavailable),
]


def gateway_answer(refusal: gw.OutlayError, flavor: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body exactly as the gateway writes them."""
    return error_answer(refusal, flavor, RID)


def refusal(code: str) -> gw.OutlayError:
    return next(r for r, _ in REFUSALS if r.code == code)


@pytest.mark.parametrize("flavor", ["openai", "anthropic"])
@pytest.mark.parametrize(("refusal", "typed"), REFUSALS, ids=[r.code for r, _ in REFUSALS])
def test_every_refusal_of_the_table_maps_to_its_typed_error(
        refusal: gw.OutlayError, typed: type[outlay.OutlayError], flavor: str) -> None:
    status, headers, body = gateway_answer(refusal, flavor)

    error = error_from_answer(status, headers, body)

    assert type(error) is typed
    assert isinstance(error, outlay.OutlayError)
    assert (error.status, error.code, error.message) == (status, refusal.code, refusal.message)
    assert error.request_id == RID
    assert str(error) == refusal.message
    expected = {k: v for k, v in refusal.details.items() if k != "param"}
    if "retry_after" in expected:  # the Retry-After header, in seconds
        expected["retry_after"] = float(expected["retry_after"])
    assert error.details == expected


@pytest.mark.parametrize("flavor", ["openai", "anthropic"])
def test_budget_exceeded_carries_exact_spend_cap_and_reset(flavor: str) -> None:
    error = error_from_answer(*gateway_answer(refusal("budget_exceeded"), flavor))

    assert isinstance(error, outlay.BudgetExceeded)
    assert (error.scope, error.period) == ("agent:a", "day")
    assert (error.spent_usd, error.cap_usd) == (Decimal("4.5"), Decimal(5))
    assert error.resets_at == datetime(2026, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize("flavor", ["openai", "anthropic"])
def test_rate_limited_carries_retry_after_scope_and_limit(flavor: str) -> None:
    status, headers, body = gateway_answer(refusal("rate_limit_exceeded"), flavor)
    assert headers["Retry-After"] == "13"

    error = error_from_answer(status, headers, body)

    assert isinstance(error, outlay.RateLimited)
    assert (error.retry_after, error.scope, error.limit) == (13.0, "key:key_1", 7)


def test_the_retry_after_header_wins_over_the_body_and_the_body_serves_without_it() -> None:
    status, headers, body = gateway_answer(refusal("rate_limit_exceeded"), "openai")

    with_header = error_from_answer(status, {**headers, "Retry-After": "2"}, body)
    without = error_from_answer(status, {}, body)

    assert isinstance(with_header, outlay.RateLimited)
    assert isinstance(without, outlay.RateLimited)
    assert (with_header.retry_after, without.retry_after) == (2.0, 13.0)


@pytest.mark.parametrize("value", ["²", "٣", "1e3", "-1", "nan", "soon"])
def test_a_retry_after_header_that_is_not_one_leaves_the_body_s(value: str) -> None:
    status, headers, body = gateway_answer(refusal("rate_limit_exceeded"), "openai")
    error = error_from_answer(status, {**headers, "Retry-After": value}, body)
    assert isinstance(error, outlay.RateLimited)
    assert error.retry_after == 13.0
    bare = error_from_answer(429, {"Retry-After": value}, None)
    assert isinstance(bare, outlay.RateLimited)
    assert bare.retry_after is None


def test_retry_after_as_an_http_date_is_seconds_from_now() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    error = error_from_answer(429, {"retry-after": format_datetime(when, usegmt=True)}, None)

    assert isinstance(error, outlay.RateLimited)
    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 30


@pytest.mark.parametrize("flavor", ["openai", "anthropic"])
def test_allow_lists_and_approval_details(flavor: str) -> None:
    model = error_from_answer(*gateway_answer(refusal("model_not_allowed"), flavor))
    vendor = error_from_answer(*gateway_answer(refusal("vendor_not_allowed"), flavor))
    approval = error_from_answer(*gateway_answer(refusal("approval_required"), flavor))
    expired = error_from_answer(*gateway_answer(refusal("key_expired"), flavor))

    assert isinstance(model, outlay.ModelNotAllowed)
    assert model.allowed == ["gpt-4o-mini", "claude-*"]
    assert isinstance(vendor, outlay.VendorNotAllowed)
    assert vendor.allowed == ["stripe"]
    assert isinstance(approval, outlay.ApprovalRequired)
    assert approval.approval_id == "apr_42"
    assert isinstance(expired, outlay.KeyExpired)
    assert expired.expired_at == datetime(2026, 7, 1, tzinfo=UTC)


@pytest.mark.parametrize("flavor", ["openai", "anthropic"])
def test_least_privilege_refusals_name_what_was_refused(flavor: str) -> None:
    operation = error_from_answer(*gateway_answer(refusal("operation_not_allowed"), flavor))
    account = error_from_answer(*gateway_answer(refusal("account_not_allowed"), flavor))
    destination = error_from_answer(*gateway_answer(refusal("destination_not_allowed"), flavor))
    money_out = error_from_answer(*gateway_answer(refusal("money_out_not_capped"), flavor))

    assert isinstance(operation, outlay.OperationNotAllowed)
    assert (operation.vendor, operation.method, operation.path) == ("stripe", "POST",
                                                                    "/v1/refunds")
    assert operation.allowed == ["GET /v1/charges/*"]
    assert isinstance(account, outlay.AccountNotAllowed)
    assert (account.vendor, account.account, account.allowed) == ("stripe", "acct_1Other",
                                                                  ["acct_1Mine"])
    assert isinstance(destination, outlay.DestinationNotAllowed)
    assert (destination.destination, destination.allowed) == ("+4420", ["+1*"])
    assert isinstance(money_out, outlay.MoneyOutNotCapped)
    assert money_out.vendor == "stripe"
    assert money_out.scope == "agent:a"
    # one `except` for every allow-list, the allow-lists of models and vendors among them
    for error in (operation, account, destination,
                  error_from_answer(*gateway_answer(refusal("model_not_allowed"), flavor)),
                  error_from_answer(*gateway_answer(refusal("vendor_not_allowed"), flavor))):
        assert isinstance(error, outlay.NotAllowed)
    assert not isinstance(money_out, outlay.NotAllowed)  # an operator's cap to add, not a list


def test_an_account_refused_by_no_policy_has_no_allowed_list() -> None:
    error = error_from_answer(*gateway_answer(
        not_allowed_account("stripe", "acct_1Other", None, None), "openai"))
    assert isinstance(error, outlay.AccountNotAllowed)
    assert error.allowed == []
    assert error.details["allowed"] is None


def test_an_expired_key_is_a_revoked_key_and_both_are_invalid_keys() -> None:
    assert issubclass(outlay.KeyExpired, outlay.KeyRevoked)
    assert issubclass(outlay.KeyRevoked, outlay.InvalidKey)
    assert not issubclass(outlay.BudgetExceeded, outlay.RateLimited)


def test_a_402_or_429_without_a_code_is_still_typed_by_its_status() -> None:
    budget = error_from_answer(402, None, b"<html>Payment Required</html>")
    limited = error_from_answer(429, {"Retry-After": "4"}, None)

    assert isinstance(budget, outlay.BudgetExceeded)
    assert budget.code == "budget_exceeded"
    assert budget.spent_usd is None
    assert isinstance(limited, outlay.RateLimited)
    assert (limited.code, limited.retry_after) == ("rate_limit_exceeded", 4.0)


@pytest.mark.parametrize(("status", "body"), [
    (402, {"error": {"type": "card_error", "code": "card_declined", "message": "Declined."}}),
    (429, {"error": {"type": "insufficient_quota", "code": "insufficient_quota",
                     "message": "Quota."}}),
    (401, None),
    (403, {"error": {"message": "Forbidden."}}),
    (404, {"error": {"type": "not_found_error", "message": "No such model."}}),
    (500, b"oops"),
    (200, {"error": {"code": "budget_exceeded", "message": "a 2xx is never a refusal"}}),
], ids=["stripe-card-declined", "openai-quota", "401-no-body", "403-no-code", "404", "500",
        "200"])
def test_answers_that_are_not_outlay_refusals_are_not_typed(status: int, body: object) -> None:
    assert error_from_answer(status, {}, body) is None


def test_the_openai_sdks_unwrapped_error_object_is_read_too() -> None:
    inner = {"message": "Budget exceeded.", "type": "budget_exceeded", "code": "budget_exceeded",
             "param": None, "cap_usd": "5"}
    error = error_from_answer(402, {}, inner)

    assert isinstance(error, outlay.BudgetExceeded)
    assert error.cap_usd == Decimal(5)
