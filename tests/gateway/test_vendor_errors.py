"""Every refusal on a vendor route, shaped for the vendor's own SDK (contract §4.3.1)."""

from __future__ import annotations

import orjson
import pytest

from outlay.gateway.vendor_errors import vendor_refusal_answer
from outlay.policy.errors import (
    BadRequest,
    BudgetExceeded,
    NotAllowed,
    OutlayError,
    RateLimited,
    Unavailable,
)

BUDGET = BudgetExceeded("budget_exceeded", "Budget exceeded for agent:a.", scope="agent:a",
                        cap_usd="5")
RATE = RateLimited("rate_limit_exceeded", "Rate limit.", scope="agent:a", retry_after=3)
DENIED = NotAllowed("vendor_not_allowed", "Vendor 'stripe' is not allowed.", allowed=["x"])
BAD = BadRequest("invalid_request", "`To` is required.", param="To")
DOWN = Unavailable("upstream_unavailable", "The vendor could not be reached.", status=502)


@pytest.mark.parametrize(("error", "status"), [
    (BUDGET, 400), (DENIED, 400), (RATE, 429), (BAD, 400), (DOWN, 502)])
def test_stripe_never_gets_a_402_or_a_retry(error: OutlayError, status: int) -> None:
    got, headers, raw = vendor_refusal_answer(error, "stripe", "req_1")
    body = orjson.loads(raw)["error"]
    assert got == status
    assert body["code"] == error.code
    assert body["message"] == error.message
    assert body["outlay_type"] == error.error_type
    assert body["type"] == ("api_error" if status >= 500 else "invalid_request_error")
    assert headers.get("Stripe-Should-Retry") == (None if status >= 500 else "false")
    assert headers["X-Outlay-Request-Id"] == "req_1"


def test_stripe_keeps_outlays_details_and_headers() -> None:
    status, headers, raw = vendor_refusal_answer(BUDGET, "stripe", "req_1")
    assert (status, orjson.loads(raw)["error"]["cap_usd"]) == (400, "5")
    assert headers["x-should-retry"] == "false"
    _, headers, raw = vendor_refusal_answer(BAD, "stripe", "req_1")
    assert orjson.loads(raw)["error"]["param"] == "To"


@pytest.mark.parametrize("error", [BUDGET, RATE, DENIED, BAD])
def test_twilio_and_resend_keep_the_status_in_their_own_shape(error: OutlayError) -> None:
    status, _, raw = vendor_refusal_answer(error, "twilio", "req_1")
    twilio = orjson.loads(raw)
    assert status == error.status
    assert (twilio["status"], twilio["code"], twilio["message"]) == (
        error.status, error.code, error.message)
    assert twilio["param"] == error.details.get("param")
    status, _, raw = vendor_refusal_answer(error, "resend", "req_1")
    resend = orjson.loads(raw)
    assert status == error.status
    assert (resend["statusCode"], resend["name"], resend["message"]) == (
        error.status, error.code, error.message)


def test_another_vendor_gets_openais_shape() -> None:
    status, _, raw = vendor_refusal_answer(BUDGET, "acme", "req_1")
    assert status == 402
    assert orjson.loads(raw)["error"]["type"] == "budget_exceeded"
