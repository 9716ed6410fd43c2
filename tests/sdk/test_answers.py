"""`error_from`: the typed refusal behind what code that does not intercept has in hand, an
SDK's exception or a response of any usual HTTP client."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import httpx2
import openai
import pytest
import requests
import resend.exceptions
import stripe
from requests.structures import CaseInsensitiveDict
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped]

import outlay
from outlay.gateway.errors import error_answer
from outlay.policy import errors as gw

RID = "req_0123456789ab0123456789ab"
BUDGET_BODY = error_answer(gw.BudgetExceeded(
    "budget_exceeded", "Budget exceeded: $4.5 spent of a $5 hard cap today.", scope="agent:a",
    period="day", spent_usd="4.5", cap_usd="5", resets_at="2026-07-01T00:00:00Z"),
    "openai", RID)[2]
HEADERS = {"X-Outlay-Request-Id": RID, "Content-Type": "application/json"}


def openai_status_error(status: int, body: bytes, headers: dict[str, str]) -> openai.APIStatusError:
    """What the openai SDK raises for this answer when nothing is intercepted."""
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(status, headers=headers, content=body))
    with openai.OpenAI(api_key="olk_x", base_url="http://gw.test/v1", max_retries=0,
                       http_client=httpx2.Client(transport=transport)) as client, \
            pytest.raises(openai.APIStatusError) as raised:
        client.models.list()
    assert not isinstance(raised.value, outlay.OutlayError)  # nothing is intercepted here
    return raised.value


def requests_response(status: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers = CaseInsensitiveDict(headers)
    return response


def httpx_response(status: int, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body,
                          request=httpx.Request("POST", "http://gw.test/vendors/stripe/v1/x"))


@pytest.mark.parametrize("make", [
    openai_status_error,
    requests_response,
    httpx_response,
    lambda *a: requests.HTTPError("402", response=requests_response(*a)),
    lambda *a: httpx.HTTPStatusError("402", request=httpx_response(*a).request,
                                     response=httpx_response(*a)),
    lambda status, body, headers: stripe.CardError(
        "refused", None, "budget_exceeded", http_body=body, http_status=status,
        json_body=httpx.Response(200, content=body).json(), headers=headers),
], ids=["openai-error", "requests-response", "httpx-response", "requests-httperror",
        "httpx-httpstatuserror", "stripe-error"])
def test_error_from_reads_sdk_errors_and_responses(make: Any) -> None:
    error = outlay.error_from(make(402, BUDGET_BODY, HEADERS))

    assert isinstance(error, outlay.BudgetExceeded)
    assert error.cap_usd == Decimal(5)
    assert error.request_id == RID


def test_error_from_keeps_what_status_only_vendor_errors_have() -> None:
    limited = outlay.error_from(resend.exceptions.RateLimitError(
        "Too many requests", "rate_limit_exceeded", 429, headers={"retry-after": "3"}))
    budget = outlay.error_from(TwilioRestException(402, "https://api.twilio.com/x", "refused"))
    revoked = outlay.error_from(TwilioRestException(401, "https://api.twilio.com/x", "refused"))

    assert isinstance(limited, outlay.RateLimited)
    assert limited.retry_after == 3.0
    assert isinstance(budget, outlay.BudgetExceeded)
    assert revoked is None  # 401 alone does not say revoked, expired or unknown


def test_error_from_reads_the_code_and_details_twilio_and_resend_keep() -> None:
    # twilio-python keeps the body's `code` (ours is a word), `message` and `details`
    refused = outlay.error_from(TwilioRestException(
        403, "https://api.twilio.com/x", "Unable to create record: The twilio destination 'GB' "
        "is not allowed.", "destination_not_allowed", "POST",
        {"vendor": "twilio", "destination": "GB", "allowed": ["US"], "scope": "agent:a"}))
    # Twilio's own refusals carry a number: typed by status alone, as before
    own = outlay.error_from(TwilioRestException(403, "https://api.twilio.com/x", "no", 20003))
    # resend-python keeps our code as `error_type`, and the message
    mailed = outlay.error_from(resend.exceptions.ResendError(
        403, "destination_not_allowed", "The resend destination 'x@evil.test' is not allowed.",
        "", headers={"x-outlay-request-id": RID}))
    unknown = outlay.error_from(resend.exceptions.ResendError(
        403, "restricted_api_key", "This API key is restricted.", ""))

    assert isinstance(refused, outlay.DestinationNotAllowed)
    assert refused.message == "The twilio destination 'GB' is not allowed."
    assert (refused.destination, refused.allowed, refused.scope) == ("GB", ["US"], "agent:a")
    assert own is None
    assert isinstance(mailed, outlay.DestinationNotAllowed)
    assert mailed.request_id == RID
    assert unknown is None  # Resend's own refusal is not Outlay's


def test_error_from_returns_an_outlay_error_itself_and_none_for_anything_else() -> None:
    own = outlay.RateLimited("slow down", details={"retry_after": 1})

    assert outlay.error_from(own) is own
    assert outlay.error_from(ValueError("no")) is None
    assert outlay.error_from(requests_response(200, b"{}", {})) is None
    assert outlay.error_from(None) is None


def test_an_unread_httpx_stream_is_typed_by_status_alone() -> None:
    response = httpx.Response(429, headers={"Retry-After": "9"},
                              stream=httpx.ByteStream(b'{"error": {}}'))
    error = outlay.error_from(response)

    assert isinstance(error, outlay.RateLimited)
    assert error.retry_after == 9.0


def test_errors_can_be_made_directly_with_their_defaults() -> None:
    error = outlay.BudgetExceeded("over", details={"spent_usd": "1.25", "cap_usd": 2})

    assert (error.status, error.code, error.request_id) == (402, "budget_exceeded", None)
    assert (error.spent_usd, error.cap_usd) == (Decimal("1.25"), Decimal(2))
    assert error.resets_at is None
    bad = outlay.BudgetExceeded("over", details={"spent_usd": "lots", "cap_usd": 1.5,
                                                 "resets_at": "soon"})
    assert (bad.spent_usd, bad.cap_usd, bad.resets_at) == (None, Decimal("1.5"), None)


def test_budget_of_reads_the_budget_an_answer_reports() -> None:
    import httpx

    from outlay import budget_of

    answer = httpx.Response(200, headers={"X-Outlay-Budget-Remaining-Usd": "1.25",
                                          "X-Outlay-Budget-Scope": "tag:customer=acme"})
    left = budget_of(answer)
    assert left is not None
    assert (left.remaining_usd, left.scope) == (Decimal("1.25"), "tag:customer=acme")
    plain = budget_of({"x-outlay-budget-remaining-usd": "0"})
    assert plain is not None
    assert (plain.remaining_usd, plain.scope) == (Decimal("0"), None)
    assert budget_of(httpx.Response(200)) is None  # no hard budget applied
    assert budget_of({"X-Outlay-Budget-Remaining-Usd": "lots"}) is None
    assert budget_of(object()) is None

    class Raw:  # an SDK's raw response keeps the HTTP response under `.response`
        response = answer
    assert budget_of(Raw()) == left
