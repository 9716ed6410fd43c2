"""`outlay.intercept_all` against a real `outlay serve`: agent code that builds the official
openai, anthropic, stripe, twilio and resend clients as if Outlay did not exist is charged on
the Outlay key, and refusals arrive as Outlay's typed errors. Nothing leaves loopback: the
gateway answers from its simulated provider and vendors."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
import resend
import stripe
from twilio.http.http_client import TwilioHttpClient  # type: ignore[import-untyped]
from twilio.rest import Client as TwilioClient  # type: ignore[import-untyped]

import outlay

from .harness import Gateway, micros, unique

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Say hello."}]
CLAUDE = "claude-haiku-4-5"
BOGUS = "sk-not-a-real-key"
ENVIRONMENT = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ADMIN_KEY", "ANTHROPIC_API_KEY",
               "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE")


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Provider settings in the environment that point anywhere but the gateway, as an agent's
    machine may have; nothing is left intercepted after a test."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", BOGUS)
    monkeypatch.setenv("ANTHROPIC_API_KEY", BOGUS)
    yield
    outlay.restore()


def intercepted(gateway: Gateway, prefix: str, **key_fields: Any) -> dict[str, Any]:
    """A fresh key (with `key_fields`, e.g. a policy), and the process intercepted with it."""
    minted = gateway.mint_key(unique(prefix), **key_fields)
    outlay.intercept_all(key=minted["key"], base_url=gateway.url)
    return minted


def chat(client: openai.OpenAI) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)


# --- LLM clients ------------------------------------------------------------------------------


def test_an_openai_client_with_a_bogus_key_and_no_base_url_is_charged_on_the_outlay_key(
        gateway: Gateway) -> None:
    minted = intercepted(gateway, "sdk-openai")

    with openai.OpenAI(api_key=BOGUS, max_retries=0, timeout=15) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
        completion = raw.parse()
    with openai.OpenAI(max_retries=0, timeout=15) as from_env:  # the key of the environment
        chat(from_env)

    assert completion.choices[0].message.content
    entries = gateway.audit(f"key:{minted['id']}")
    assert [(e["route"], e["status"]) for e in entries] == [
        ("openai.chat", 200)] * 2
    assert entries[1]["request_id"] == raw.headers["x-outlay-request-id"]
    assert all(micros(e["cost_usd"]) > 0 for e in entries)


async def test_an_async_openai_client_is_routed_too(gateway: Gateway) -> None:
    minted = intercepted(gateway, "sdk-async-openai")

    async with openai.AsyncOpenAI(max_retries=0, timeout=15) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)

    assert completion.choices[0].message.content
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert (entry["route"], entry["settlement"]) == ("openai.chat", "settled")


def test_an_anthropic_client_with_no_arguments_is_charged_on_the_outlay_key(
        gateway: Gateway) -> None:
    minted = intercepted(gateway, "sdk-anthropic")

    with anthropic.Anthropic(max_retries=0, timeout=15) as client:
        message = client.messages.create(model=CLAUDE, max_tokens=16, messages=MESSAGES)

    assert message.content[0].type == "text"
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert (entry["vendor"], entry["route"], entry["status"]) == (
        "anthropic", "anthropic.messages", 200)
    assert micros(entry["cost_usd"]) > 0


# --- typed errors -----------------------------------------------------------------------------


def test_a_hard_budget_is_budget_exceeded_and_still_an_openai_status_error(
        gateway: Gateway) -> None:
    minted = intercepted(gateway, "sdk-402", policy={
        "budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]})

    with openai.OpenAI(max_retries=0, timeout=15) as client, \
            pytest.raises(openai.APIStatusError) as raised:
        chat(client)

    error = raised.value
    assert isinstance(error, outlay.BudgetExceeded)
    assert (error.status, error.status_code, error.code) == (402, 402, "budget_exceeded")
    assert (error.scope, error.period) == (f"key:{minted['id']}", "day")
    assert (error.spent_usd, error.cap_usd) == (Decimal(0), Decimal("0.000001"))
    assert error.resets_at is not None
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert entry["request_id"] == error.request_id
    assert entry["code"] == "budget_exceeded"


def test_rpm_1_gives_rate_limited_with_retry_after(gateway: Gateway) -> None:
    intercepted(gateway, "sdk-429", policy={"rpm": 1})

    with openai.OpenAI(max_retries=0, timeout=15) as client:
        chat(client)
        with pytest.raises(outlay.RateLimited) as raised:
            chat(client)

    error = raised.value
    assert isinstance(error, openai.RateLimitError)
    assert error.retry_after is not None
    assert 1 <= error.retry_after <= 60  # never longer than the window
    assert (error.limit, error.code) == (1, "rate_limit_exceeded")


def test_the_retry_helper_gives_up_at_once_when_the_wait_is_longer_than_allowed(
        gateway: Gateway) -> None:
    intercepted(gateway, "sdk-retry", policy={"rpm": 1})
    slept: list[float] = []

    with openai.OpenAI(max_retries=0, timeout=15) as client:
        outlay.retry(chat, client, sleep=slept.append)
        with pytest.raises(outlay.RateLimited):
            outlay.retry(chat, client, attempts=3, max_wait_s=0.5, sleep=slept.append)

    assert slept == []


def test_anthropic_refusals_arrive_typed_in_anthropics_shape(gateway: Gateway) -> None:
    minted = intercepted(gateway, "sdk-an-403", policy={"models": ["gpt-4o-mini"]})

    with anthropic.Anthropic(max_retries=0, timeout=15) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            client.messages.create(model=CLAUDE, max_tokens=16, messages=MESSAGES)
        gateway.revoke(minted["id"])
        with pytest.raises(outlay.KeyRevoked) as revoked:
            client.messages.create(model=CLAUDE, max_tokens=16, messages=MESSAGES)

    assert isinstance(denied.value, outlay.ModelNotAllowed)
    assert denied.value.allowed == ["gpt-4o-mini"]
    assert isinstance(revoked.value, anthropic.AuthenticationError)
    assert isinstance(revoked.value, outlay.InvalidKey)
    assert revoked.value.code == "key_revoked"


def test_a_call_needing_approval_carries_the_approval_id(gateway: Gateway) -> None:
    agent = unique("sdk-approval")
    gateway.set_policy(f"agent:{agent}", {
        "on_breach": "require_approval", "approval_wait_s": 0,
        "budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]})
    outlay.intercept_all(gateway.mint_key(agent)["key"], gateway.url)

    with openai.OpenAI(max_retries=0, timeout=15) as client, \
            pytest.raises(outlay.ApprovalRequired) as raised:
        chat(client)

    assert isinstance(raised.value, openai.PermissionDeniedError)
    approval = gateway.admin.get(f"/admin/v1/approvals/{raised.value.approval_id}").json()
    assert (approval["agent"], approval["state"]) == (agent, "pending")


# --- vendor SDKs ------------------------------------------------------------------------------


def budgeted(gateway: Gateway, prefix: str, usd: str = "100") -> dict[str, Any]:
    return intercepted(gateway, prefix, policy={
        "budgets": [{"usd": usd, "period": "total", "mode": "hard"}]})


def spent_and_vendors(gateway: Gateway, minted: dict[str, Any]) -> tuple[int, list[str]]:
    scope = f"key:{minted['id']}"
    return (micros(gateway.budget(scope)["spent_usd"]),
            [e["vendor"] for e in gateway.audit(scope)])


def test_a_stripe_payment_goes_through_the_gateway_and_is_charged(gateway: Gateway) -> None:
    minted = budgeted(gateway, "sdk-stripe")
    http = stripe.RequestsClient()
    try:
        sdk = stripe.StripeClient(BOGUS, http_client=http, max_network_retries=0)
        intent = sdk.v1.payment_intents.create(params={"amount": 2000, "currency": "usd"})
    finally:
        http.close()

    assert (intent.amount, intent.currency) == (2000, "usd")
    assert spent_and_vendors(gateway, minted) == (20_000_000, ["stripe"])


def test_a_stripe_refusal_is_read_by_error_from(gateway: Gateway) -> None:
    minted = budgeted(gateway, "sdk-stripe-402", usd="10")
    http = stripe.RequestsClient()
    try:
        sdk = stripe.StripeClient(BOGUS, http_client=http, max_network_retries=0)
        with pytest.raises(stripe.StripeError) as raised:
            sdk.v1.payment_intents.create(params={"amount": 2000, "currency": "usd"})
    finally:
        http.close()

    error = outlay.error_from(raised.value)
    assert isinstance(error, outlay.BudgetExceeded)
    assert (error.scope, error.cap_usd) == (f"key:{minted['id']}", Decimal(10))
    assert spent_and_vendors(gateway, minted) == (0, ["stripe"])


def test_a_twilio_message_goes_through_the_gateway_as_basic_auth(gateway: Gateway) -> None:
    minted = budgeted(gateway, "sdk-twilio")
    http = TwilioHttpClient()
    try:
        message = TwilioClient("ACbogus", BOGUS, http_client=http).messages.create(
            to="+14155550100", from_="+15017122661", body="Your parcel is on its way.")
    finally:
        http.session.close()

    assert message.sid.startswith("SM")
    spent, vendors = spent_and_vendors(gateway, minted)
    assert vendors == ["twilio"]
    assert spent > 0


def test_a_resend_email_goes_through_the_gateway_and_is_charged_per_recipient(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resend, "api_key", "re_bogus")
    minted = budgeted(gateway, "sdk-resend")

    sent = resend.Emails.send({"from": "shop@example.com", "to": ["a@example.com",
                                                                "b@example.com"],
                               "subject": "Receipt", "text": "Thanks"})

    assert sent["id"]
    assert spent_and_vendors(gateway, minted) == (2 * 900, ["resend"])  # $0.0009 an email


# --- restore ----------------------------------------------------------------------------------


def test_restore_sends_new_clients_back_to_their_own_destinations(gateway: Gateway) -> None:
    intercepted(gateway, "sdk-restore")
    with openai.OpenAI() as during:
        assert str(during.base_url) == f"{gateway.url}/v1/"

    outlay.restore()

    with openai.OpenAI() as oa, anthropic.Anthropic() as an:
        assert (str(oa.base_url), oa.api_key) == ("https://api.openai.com/v1/", BOGUS)
        assert str(an.base_url).rstrip("/") == "https://api.anthropic.com"
        assert an.api_key == BOGUS
